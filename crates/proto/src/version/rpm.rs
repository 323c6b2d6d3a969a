//! rpm's version order: `rpmvercmp` (rpm's `rpmio/rpmvercmp.c`) over `[epoch:]version-release`.
//!
//! A version is cut into segments of ASCII digits or ASCII letters; everything else separates
//! them and is otherwise ignored (so `2.0` equals `2_0`). Digit segments compare numerically
//! and beat letter segments; letter segments compare as bytes. `~` sorts before anything, even
//! the end (`1.0~rc1 < 1.0`); `^` sorts after the end but before any further segment
//! (`1.0 < 1.0^git1 < 1.0.1`). When every segment matched, the version with segments left
//! over is the greater.

use std::cmp::Ordering;

use super::compare_digits;

/// Compares two `[epoch:]version-release` strings as rpm does: the epoch numerically (none is
/// 0), then the versions, then the releases with `rpmvercmp`. A side without a release
/// compares its empty release like any other string (below any release), so the order stays
/// total where rpm's dependency matching would treat a missing release as "any".
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split(a);
    let (eb, vb, rb) = split(b);
    compare_digits(ea, eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| rpmvercmp(ra, rb))
}

/// Epoch (digits, `"0"` when absent), version and release (after the last `-`).
fn split(v: &str) -> (&str, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e, rest),
        _ => ("0", v),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, release),
        None => (epoch, rest, ""),
    }
}

/// rpm's `rpmvercmp` over one version or release string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    // A byte that neither starts a segment nor is one of the two special separators.
    let skip = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && skip(a[i]) {
            i += 1;
        }
        while j < b.len() && skip(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // `~` sorts before everything else, the end included.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // `^` sorts after the end (the base version) but before any other segment.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let end_a = i + a[i..].iter().take_while(|c| class(c)).count();
        let end_b = j + b[j..].iter().take_while(|c| class(c)).count();
        // Segments of different kinds: the digits are the newer.
        if end_b == j {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (sa, sb) = (&a[i..end_a], &b[j..end_b]);
        let o = if numeric {
            compare_digits(ascii(sa), ascii(sb))
        } else {
            sa.cmp(sb)
        };
        if o != Ordering::Equal {
            return o;
        }
        i = end_a;
        j = end_b;
    }
    // Every segment matched: whichever still has something left is the greater.
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// A run of ASCII digits as text (it was checked byte by byte).
fn ascii(s: &[u8]) -> &str {
    std::str::from_utf8(s).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_and_tilde_and_evr() {
        assert_eq!(compare("1.0^git1", "1.0.1"), Ordering::Less);
        assert_eq!(compare("1.0^git1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0^git1", "1.0^git2"), Ordering::Less);
        assert_eq!(compare("1.0~rc1^git1", "1.0~rc1"), Ordering::Greater);
        assert_eq!(compare("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(compare("0:1.0-1", "1.0-1"), Ordering::Equal);
        assert_eq!(compare("1.0-2.fc40", "1.0-10.fc40"), Ordering::Less);
        assert_eq!(compare("5.14.0-70.el9", "5.14.0-162.el9"), Ordering::Less);
    }
}
