//! The version orders of each source checked against the published test cases of the
//! reference implementations (copied as data under `tests/version_cases/`, each file saying
//! where it comes from), and property tests that each order is a total order and keeps the
//! rules its source documents.

use std::cmp::Ordering;

use invsync_proto::version::{Scheme, VersionRange, apk, compare_in, pep440, rpm};
use proptest::prelude::*;

/// Lines of a case file without comments and blank lines.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

#[test]
fn rpm_agrees_with_rpmvercmp_at() {
    let mut n = 0;
    for line in lines(include_str!("version_cases/rpmvercmp.at.txt")) {
        let args = line
            .strip_prefix("RPMVERCMP(")
            .and_then(|l| l.strip_suffix(')'))
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let parts: Vec<&str> = args.split(", ").collect();
        let [a, b, want] = parts[..] else {
            panic!("bad line {line:?}")
        };
        let want = match want {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            "1" => Ordering::Greater,
            _ => panic!("bad result in {line:?}"),
        };
        assert_eq!(rpm::rpmvercmp(a, b), want, "rpmvercmp({a}, {b})");
        assert_eq!(compare_in("rpm", a, b), want, "rpm compare({a}, {b})");
        n += 1;
    }
    assert_eq!(n, 69);
}

#[test]
fn apk_agrees_with_version_data() {
    let mut n = 0;
    for line in lines(include_str!("version_cases/apk_version.data.txt")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [a, op, b] = parts[..] else {
            panic!("bad line {line:?}")
        };
        let want = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => panic!("bad operator in {line:?}"),
        };
        assert_eq!(apk::compare(a, b), want, "{a} {op} {b}");
        assert_eq!(apk::compare(b, a), want.reverse(), "{b} vs {a}");
        n += 1;
    }
    assert_eq!(n, 729);
}

#[test]
fn pep440_agrees_with_packaging_order_and_normalisation() {
    let order: Vec<&str> = lines(include_str!("version_cases/pep440_order.txt")).collect();
    assert_eq!(order.len(), 92);
    for (i, a) in order.iter().enumerate() {
        assert!(pep440::is_valid(a), "{a} is valid");
        for (j, b) in order.iter().enumerate() {
            assert_eq!(compare_in("pip", a, b), i.cmp(&j), "{a} vs {b}");
        }
    }
    let mut n = 0;
    for line in lines(include_str!("version_cases/pep440_equal.txt")) {
        let (a, b) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(pep440::compare(a, b), Ordering::Equal, "{a} == {b}");
        n += 1;
    }
    assert_eq!(n, 33);
}

#[test]
fn the_issue_examples_and_ranges_use_the_source() {
    assert_eq!(compare_in("rpm", "1.0^git1", "1.0.1"), Ordering::Less);
    assert_eq!(compare_in("dpkg", "1.0^git1", "1.0.1"), Ordering::Greater);
    assert_eq!(compare_in("apk", "1.0_rc1", "1.0"), Ordering::Less);
    assert_eq!(compare_in("dpkg", "1.0_rc1", "1.0"), Ordering::Greater);
    assert_eq!(compare_in("pip", "1.0rc1", "1.0"), Ordering::Less);
    // Snap, flatpak and unknown sources fall back to dpkg's order.
    for source in ["snap", "flatpak", "dpkg", "something-new"] {
        assert_eq!(Scheme::of(source), Scheme::Dpkg, "{source}");
        assert_eq!(compare_in(source, "1.0~rc1", "1.0"), Ordering::Less);
    }
    let below = VersionRange::parse("<1.0.1").unwrap();
    assert!(below.matches_in(Scheme::Rpm, "1.0^git1"));
    assert!(!below.matches_in(Scheme::Dpkg, "1.0^git1"));
    let released = VersionRange::parse(">=1.0").unwrap();
    assert!(!released.matches_in(Scheme::Apk, "1.0_rc1"));
    assert!(released.matches_in(Scheme::Apk, "1.0-r1"));
    assert!(released.matches("1.0_rc1"));
}

const SCHEMES: [Scheme; 4] = [Scheme::Dpkg, Scheme::Rpm, Scheme::Apk, Scheme::Pep440];

/// Version-like strings: the characters every scheme gives a meaning to.
fn version() -> impl Strategy<Value = String> {
    "[0-9a-z._~^+:!-]{0,12}"
}

/// Versions made of dotted numbers, valid in every scheme.
fn dotted() -> impl Strategy<Value = String> {
    proptest::collection::vec(0u32..30, 1..5)
        .prop_map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}

/// Versions apk calls valid, with the zeros, letters, suffixes and revisions its order treats
/// specially.
fn apk_valid() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(prop_oneof!["0", "00", "05", "1", "10", "2"], 1..4),
        proptest::option::of("[a-c]"),
        proptest::collection::vec(
            (
                prop_oneof!["alpha", "rc", "p", "git"],
                proptest::option::of(0u8..3),
            ),
            0..3,
        ),
        proptest::option::of(0u8..3),
    )
        .prop_map(|(nums, letter, suffixes, rev)| {
            let mut v = nums.join(".");
            v.extend(letter);
            for (s, n) in suffixes {
                v.push('_');
                v.push_str(&s);
                v.extend(n.map(|n| n.to_string()));
            }
            if let Some(r) = rev {
                v.push_str(&format!("-r{r}"));
            }
            v
        })
}

proptest! {
    #[test]
    fn apk_order_is_total_on_valid_versions(a in apk_valid(), b in apk_valid(), c in apk_valid()) {
        prop_assert!(apk::is_valid(&a), "{}", a);
        prop_assert_eq!(apk::compare(&a, &b), apk::compare(&b, &a).reverse(), "{} {}", a, b);
        let mut v = [a.as_str(), b.as_str(), c.as_str()];
        v.sort_by(|x, y| apk::compare(x, y));
        prop_assert_ne!(apk::compare(v[0], v[2]), Ordering::Greater, "{:?}", v);
        prop_assert_ne!(apk::compare(v[0], v[1]), Ordering::Greater, "{:?}", v);
        prop_assert_ne!(apk::compare(v[1], v[2]), Ordering::Greater, "{:?}", v);
    }

    #[test]
    fn every_order_is_total(a in version(), b in version(), c in version()) {
        for s in SCHEMES {
            prop_assert_eq!(s.compare(&a, &a), Ordering::Equal);
            prop_assert_eq!(s.compare(&a, &b), s.compare(&b, &a).reverse(), "{:?} {} {}", s, a, b);
            let mut v = [a.as_str(), b.as_str(), c.as_str()];
            v.sort_by(|x, y| s.compare(x, y));
            prop_assert_ne!(s.compare(v[0], v[2]), Ordering::Greater, "{:?} {:?}", s, v);
        }
    }

    #[test]
    fn dotted_versions_order_alike_in_every_scheme(a in dotted(), b in dotted()) {
        // Plain dotted numbers mean the same to every source, except that PEP 440 ignores
        // trailing zeros (1.0 == 1) where the others call the longer the greater.
        let want = Scheme::Dpkg.compare(&a, &b);
        prop_assert_eq!(Scheme::Rpm.compare(&a, &b), want);
        prop_assert_eq!(Scheme::Apk.compare(&a, &b), want);
        let pip = Scheme::Pep440.compare(&a, &b);
        prop_assert!(pip == want || pip == Ordering::Equal, "{} {}", a, b);
    }

    #[test]
    fn each_source_keeps_its_documented_rules(v in dotted(), n in 1u32..20) {
        // rpm: ~ before the base, ^ after it but before the next segment.
        let rpm = [format!("{v}~rc{n}"), v.clone(), format!("{v}^git{n}"), format!("{v}.1")];
        // apk: pre-release suffixes below the release, then -r, then a further number.
        let apk = [format!("{v}_alpha{n}"), format!("{v}_rc{n}"), v.clone(),
                   format!("{v}-r{n}"), format!("{v}_p{n}"), format!("{v}.1")];
        // PEP 440: dev below pre-releases below the release below post releases.
        let pip = [format!("{v}.dev{n}"), format!("{v}a{n}"), format!("{v}rc{n}"), v.clone(),
                   format!("{v}+local{n}"), format!("{v}.post{n}"), format!("{v}.1")];
        for (source, list) in [("rpm", &rpm[..]), ("pip", &pip[..])] {
            for w in list.windows(2) {
                prop_assert_eq!(compare_in(source, &w[0], &w[1]), Ordering::Less, "{} {:?}", source, w);
            }
        }
        // apk's `_p` is above the release but a revision is its own later token: both
        // are above the release and below the next number.
        for w in [[0, 1], [1, 2], [2, 3], [2, 4], [3, 5], [4, 5]] {
            prop_assert_eq!(compare_in("apk", &apk[w[0]], &apk[w[1]]), Ordering::Less, "{:?}", w);
        }
    }
}
