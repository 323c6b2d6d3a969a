//! apk's version order (apk-tools `src/version.c`, the Gentoo scheme):
//! `digits{.digits}[letter]{_suffix[digits]}[-rN]`.
//!
//! A version is read as a sequence of tokens, each of a kind: a number after a `.` (whose
//! leading zeros make it smaller: `1.05 < 1.5`), a number, one lowercase letter, a suffix, a
//! suffix's number, the `-r` revision, the end. Tokens compare by value while both versions
//! have tokens of the same kind; the suffixes `_alpha < _beta < _pre < _rc` are below the
//! release and `_cvs < _svn < _git < _hg < _p` above it. When the kinds differ, a pre-release
//! suffix is the smaller, otherwise the version whose next token is of a later kind (the end
//! being the latest) is the smaller: `1.0 < 1.0-r1 < 1.0.1`.
//!
//! One deliberate difference from apk-tools 2: after a dotted number made only of zeros (`.0`)
//! apk expects more digits, and where none follow and the other version has ended or goes on
//! differently, it compared that empty number's kind and put `1.0_rc1` above `1.0`. Here the
//! empty number is skipped in that case, so the suffix is seen: `1.0_rc1 < 1.0`.
//!
//! apk calls a version that does not follow the scheme invalid (`1.0bc`, `23_foo`). So that
//! the order stays total, invalid versions sort after every valid one and among themselves by
//! their bytes, which agrees with apk's own test cases.

use std::cmp::Ordering;

/// Token kinds in apk's order; a later kind where the other version has an earlier one makes
/// that version the smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
    Invalid,
}

const PRE: [&[u8]; 4] = [b"alpha", b"beta", b"pre", b"rc"];
const POST: [&[u8]; 5] = [b"cvs", b"svn", b"git", b"hg", b"p"];

/// apk refuses numbers of 18 digits or more (they would overflow its 64-bit values).
const MAX_DIGITS: usize = 18;

/// A reader of one version's tokens.
#[derive(Clone, Copy)]
struct Tokens<'a> {
    rest: &'a [u8],
    kind: Kind,
}

impl<'a> Tokens<'a> {
    fn new(v: &'a str) -> Tokens<'a> {
        Tokens {
            rest: v.as_bytes(),
            kind: Kind::Digit,
        }
    }

    /// The value of the token of the current kind; moves on to the next token's kind.
    fn next_value(&mut self) -> i64 {
        if self.rest.is_empty() {
            self.kind = Kind::End;
            return 0;
        }
        let mut then = None;
        let (value, used): (i64, usize) = match self.kind {
            Kind::DigitOrZero if self.rest[0] == b'0' => {
                // Leading zeros after a dot count down: `1.05` is below `1.5`.
                let zeros = self.rest.iter().take_while(|&&c| c == b'0').count();
                then = Some(Kind::Digit);
                (-i64::try_from(zeros).unwrap_or(i64::MAX), zeros)
            }
            Kind::DigitOrZero | Kind::Digit | Kind::SuffixNo | Kind::RevisionNo => {
                let n = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
                if n >= MAX_DIGITS {
                    self.kind = Kind::Invalid;
                    return -1;
                }
                let v = self.rest[..n]
                    .iter()
                    .fold(0i64, |v, &c| v * 10 + i64::from(c - b'0'));
                (v, n)
            }
            Kind::Letter => (i64::from(self.rest[0]), 1),
            Kind::Suffix => {
                let pre = PRE.iter().position(|s| self.rest.starts_with(s));
                let post = POST.iter().position(|s| self.rest.starts_with(s));
                match (pre, post) {
                    (Some(p), _) => (p as i64 - PRE.len() as i64, PRE[p].len()),
                    (None, Some(p)) => (p as i64, POST[p].len()),
                    (None, None) => {
                        self.kind = Kind::Invalid;
                        return -1;
                    }
                }
            }
            Kind::End | Kind::Invalid => {
                self.kind = Kind::Invalid;
                return -1;
            }
        };
        self.rest = &self.rest[used..];
        if self.rest.is_empty() {
            self.kind = Kind::End;
        } else if let Some(k) = then {
            self.kind = k;
        } else {
            self.advance_kind();
        }
        value
    }

    /// Decides the next token's kind from the separator or character that starts it.
    fn advance_kind(&mut self) {
        let c = self.rest[0];
        let digit_like = matches!(self.kind, Kind::Digit | Kind::DigitOrZero);
        let next = if c == 0 {
            Kind::End
        } else if digit_like && c.is_ascii_lowercase() {
            Kind::Letter
        } else if self.kind == Kind::Letter && c.is_ascii_digit() {
            Kind::Digit
        } else if self.kind == Kind::Suffix && c.is_ascii_digit() {
            Kind::SuffixNo
        } else {
            let k = match c {
                b'.' => Kind::DigitOrZero,
                b'_' => Kind::Suffix,
                b'-' if self.rest.get(1) == Some(&b'r') => {
                    self.rest = &self.rest[1..];
                    Kind::RevisionNo
                }
                _ => Kind::Invalid,
            };
            self.rest = &self.rest[1..];
            k
        };
        // Kinds only move forward, except the three steps the scheme repeats: another dotted
        // number, another suffix, a number after a letter.
        let allowed_back = matches!(
            (next, self.kind),
            (Kind::DigitOrZero, Kind::Digit)
                | (Kind::Suffix, Kind::SuffixNo)
                | (Kind::Digit, Kind::Letter)
        );
        self.kind = if next < self.kind && !allowed_back {
            Kind::Invalid
        } else {
            next
        };
    }
}

/// Whether apk accepts `v` as a version.
pub fn is_valid(v: &str) -> bool {
    let mut t = Tokens::new(v);
    while !matches!(t.kind, Kind::End | Kind::Invalid) {
        t.next_value();
    }
    t.kind == Kind::End
}

/// Compares two versions in apk's order (invalid ones after the valid, by bytes).
pub fn compare(a: &str, b: &str) -> Ordering {
    match (is_valid(a), is_valid(b)) {
        (true, true) => compare_valid(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.as_bytes().cmp(b.as_bytes()),
    }
}

fn compare_valid(a: &str, b: &str) -> Ordering {
    let (mut ta, mut tb) = (Tokens::new(a), Tokens::new(b));
    let (mut va, mut vb) = (0, 0);
    // The number expected after a run of zeros, when no digit follows.
    let empty_number =
        |t: &Tokens<'_>| t.kind == Kind::Digit && !t.rest.first().is_some_and(u8::is_ascii_digit);
    loop {
        while ta.kind == tb.kind && !matches!(ta.kind, Kind::End | Kind::Invalid) && va == vb {
            va = ta.next_value();
            vb = tb.next_value();
        }
        if va != vb {
            return va.cmp(&vb);
        }
        if ta.kind == tb.kind {
            return Ordering::Equal;
        }
        let (skip_a, skip_b) = (empty_number(&ta), empty_number(&tb));
        if !(skip_a || skip_b) {
            break;
        }
        if skip_a {
            ta.next_value();
        }
        if skip_b {
            tb.next_value();
        }
    }
    // Equal so far and one goes on: a pre-release suffix makes it the smaller.
    let pre_release = |t: &Tokens<'_>| {
        let mut peek = *t;
        peek.kind == Kind::Suffix && peek.next_value() < 0
    };
    if pre_release(&ta) {
        return Ordering::Less;
    }
    if pre_release(&tb) {
        return Ordering::Greater;
    }
    tb.kind.cmp(&ta.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_revisions_and_letters() {
        assert_eq!(compare("1.0_rc1", "1.0"), Ordering::Less);
        assert_eq!(compare("1.0_p1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0-r1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0-r1", "1.0.1"), Ordering::Less);
        assert_eq!(compare("1.0a", "1.0b"), Ordering::Less);
        assert_eq!(compare("1.05", "1.5"), Ordering::Less);
        assert!(is_valid("1.2.3_rc1_p2-r10") && is_valid("") && !is_valid("1.0bc"));
        assert!(!is_valid("1.0-1") && !is_valid("1_foo") && !is_valid("1.2.3-r1.4"));
    }
}
