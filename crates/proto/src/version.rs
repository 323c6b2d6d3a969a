//! Package versions: their order and the version ranges of software queries
//! (`GET /api/v1/software?version=…`, the console's software page).
//!
//! Each source orders its versions by its own rules ([`compare_in`]): rpm's `rpmvercmp`
//! ([`rpm`]), apk's ([`apk`]), PEP 440 for pip ([`pep440`]), and dpkg's for dpkg and for every
//! other source ([`compare`]). Snap and flatpak have no order of their own (a snap's version is
//! whatever its author wrote; snapd orders by revision, flatpak by commit), so they, and any
//! source this code does not know, use dpkg's order, which sorts the usual `1.2.3`, `1.2.3-4`,
//! `1.2~rc1` shapes the way their authors mean.
//!
//! dpkg's order (Debian Policy 5.6.12): an optional numeric epoch before a colon, then the
//! upstream version, then the Debian revision after the last hyphen; the last two compared
//! alternately by non-digit runs (letters before other characters, `~` before everything, even
//! the end) and digit runs (numerically).

use std::cmp::Ordering;
use std::fmt;

pub mod apk;
pub mod pep440;
pub mod rpm;

/// Which rules order a source's versions. The declaration order is the order of
/// [`compare_across`] between versions of different rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Dpkg,
    Rpm,
    Apk,
    Pep440,
}

impl Scheme {
    /// The rules of a package source (an item's `source` attribute): `rpm`, `apk`, `pip` have
    /// their own; everything else (`dpkg`, `snap`, `flatpak`, unknown sources) uses dpkg's.
    pub fn of(source: &str) -> Scheme {
        match source {
            "rpm" => Scheme::Rpm,
            "apk" => Scheme::Apk,
            "pip" => Scheme::Pep440,
            _ => Scheme::Dpkg,
        }
    }

    /// Compares two versions under these rules.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Dpkg => compare(a, b),
            Scheme::Rpm => rpm::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Pep440 => pep440::compare(a, b),
        }
    }
}

/// Compares two versions of a package of `source` (an item's `source` attribute) by that
/// source's rules (see [`Scheme::of`]).
pub fn compare_in(source: &str, a: &str, b: &str) -> Ordering {
    Scheme::of(source).compare(a, b)
}

/// A total order over versions of packages of any sources, for lists that mix them (one
/// package name from dpkg and from pip): versions under the same rules compare by those rules
/// (dpkg, snap and flatpak versions interleave), and otherwise the rules decide in
/// [`Scheme`]'s order, because versions of different rules have no order between them that
/// would stay transitive.
pub fn compare_across(a_source: &str, a: &str, b_source: &str, b: &str) -> Ordering {
    let (sa, sb) = (Scheme::of(a_source), Scheme::of(b_source));
    sa.cmp(&sb).then_with(|| sa.compare(a, b))
}

/// Compares two runs of ASCII digits numerically, whatever their length: leading zeros
/// ignored, then the longer is the greater, then the bytes decide.
pub(crate) fn compare_digits(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compares two version strings in dpkg's order.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| compare_part(ra.as_bytes(), rb.as_bytes()))
}

/// Epoch, upstream version and revision. An epoch that is not a number is left in the upstream
/// part (dpkg refuses such versions; a query should still order them somehow).
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's weight of a character in a non-digit run; the end of the string weighs 0.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
fn compare_part(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A comparison of a version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A version range: one or more comparisons separated by commas, all of which a version must
/// satisfy, e.g. `>=1.2,<2` or `=3.0.2-1` (a bare version means `=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    bounds: Vec<(Op, String)>,
}

impl VersionRange {
    /// Parses a range, refusing empty comparisons, comparisons without a version and versions
    /// with spaces or control characters, with a message that says which part is wrong.
    pub fn parse(text: &str) -> Result<VersionRange, String> {
        let mut bounds = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (op, version) = [
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("==", Op::Eq),
                ("=", Op::Eq),
                ("<", Op::Lt),
                (">", Op::Gt),
            ]
            .iter()
            .find_map(|(p, op)| part.strip_prefix(p).map(|v| (*op, v.trim())))
            .unwrap_or((Op::Eq, part));
            if version.is_empty() {
                return Err(format!(
                    "version range {text:?}: {part:?} names no version (write e.g. >=1.2,<2 or 1.2.3-1)"
                ));
            }
            if version.chars().any(|c| c.is_whitespace() || c.is_control()) || version.len() > 256 {
                return Err(format!(
                    "version range {text:?}: {version:?} is not a version (no spaces, at most 256 bytes)"
                ));
            }
            bounds.push((op, version.to_string()));
        }
        Ok(VersionRange { bounds })
    }

    /// Whether `version` is in the range, in dpkg's order.
    pub fn matches(&self, version: &str) -> bool {
        self.matches_in(Scheme::Dpkg, version)
    }

    /// Whether `version`, a version of a package of a source with these rules, is in the
    /// range: the bounds are compared by the package's own rules, so `>=1.0` holds `1.0-r1`
    /// of apk but not `1.0_rc1`.
    pub fn matches_in(&self, scheme: Scheme, version: &str) -> bool {
        self.bounds.iter().all(|(op, bound)| {
            let o = scheme.compare(version, bound);
            match op {
                Op::Eq => o == Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
            }
        })
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, v)) in self.bounds.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{v}", op.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_as_dpkg_does() {
        // Each pair is strictly ascending (checked both ways), from dpkg's own test cases and
        // Debian Policy's examples.
        let ascending = [
            ("1.0~rc1", "1.0"),
            ("1.0~~", "1.0~"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0+b1"),
            ("1.0", "1.0.1"),
            ("1.9", "1.10"),
            ("1.0-1", "1.0-2"),
            ("1.0-9", "1.0-10"),
            ("2.0", "1:0.9"),
            ("1:1.0", "2:0.1"),
            ("1.2.3", "1.2.3-0.1"),
            ("3.0.2-0ubuntu1", "3.0.2-0ubuntu1.1"),
            ("9", "10"),
            ("1.0-1", "1.0.1-1"),
        ];
        for (a, b) in ascending {
            assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
        }
        for (a, b) in [
            ("1.0", "1.0"),
            ("0:1.0", "1.0"),
            ("1.01", "1.1"),
            ("1.0-0", "1.0-0"),
        ] {
            assert_eq!(compare(a, b), Ordering::Equal, "{a} = {b}");
        }
        // Digit runs longer than any integer type still compare numerically.
        assert_eq!(
            compare("1.99999999999999999999999", "1.100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn ranges_parse_match_and_print() {
        let r = VersionRange::parse(">=1.2, <2").unwrap();
        assert_eq!(r.to_string(), ">=1.2,<2");
        assert!(r.matches("1.2") && r.matches("1.10") && r.matches("2~rc1"));
        assert!(!r.matches("1.1.9") && !r.matches("2") && !r.matches("1:1.5"));
        let exact = VersionRange::parse("3.0.2-1").unwrap();
        assert!(
            exact.matches("3.0.2-1") && exact.matches("0:3.0.2-1") && !exact.matches("3.0.2-2")
        );
        assert_eq!(
            VersionRange::parse("==1").unwrap(),
            VersionRange::parse("=1").unwrap()
        );
        let r = VersionRange::parse(">1,<=2").unwrap();
        assert!(!r.matches("1") && r.matches("1.0.1") && r.matches("2") && !r.matches("2.0.1"));
    }

    #[test]
    fn bad_ranges_are_refused_saying_what_is_wrong() {
        for (bad, says) in [
            ("", "names no version"),
            (">=", "names no version"),
            ("1.0,", "names no version"),
            ("1.0 2.0", "is not a version"),
            ("1\u{7}", "is not a version"),
        ] {
            let e = VersionRange::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
