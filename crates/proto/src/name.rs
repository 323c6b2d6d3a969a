//! Client names and site codes (SPEC section 3), validated in exactly one place.
//!
//! Every entry point (CLI arguments, CAP API, admin API, web forms) parses names through
//! [`ClientName::parse`] and [`SiteCode::parse`], so a name that is refused anywhere is refused
//! everywhere with the same message.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a client name or site code was refused. The message names the rule that was broken,
/// because an administrator reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("client name is empty; give 1 to 15 characters of A-Z 0-9 - _")]
    Empty,
    #[error("client name {shown} is {len} characters long; at most 15 are allowed")]
    TooLong { shown: String, len: usize },
    #[error("client name {shown} contains {what}; only A-Z, 0-9, '-' and '_' are allowed")]
    BadChar { shown: String, what: String },
    #[error("client name {shown} must start with a letter or a digit")]
    BadFirst { shown: String },
    #[error("site code {shown} is not 3 characters of A-Z 0-9 (e.g. S01)")]
    BadSiteCode { shown: String },
}

/// Renders untrusted input for an error message: quoted, with control bytes and non-ASCII
/// escaped so a hostile name cannot forge terminal output or log lines.
fn shown(raw: &str) -> String {
    let cut: String = raw.chars().take(40).collect();
    let mut s = format!("{:?}", cut);
    if raw.chars().count() > 40 {
        s.push('…');
    }
    s
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '/' | '\\' => format!("a path separator '{c}'"),
        '.' => "a '.'".to_string(),
        c if c.is_control() => format!("a control character U+{:04X}", c as u32),
        c if !c.is_ascii() => format!("a non-ASCII character U+{:04X}", c as u32),
        c => format!("the character '{c}'"),
    }
}

/// A NetBIOS-style client name: 1–15 characters of `A–Z 0–9 - _`, first a letter or digit,
/// case-insensitive and always held upper-case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientName(String);

impl ClientName {
    pub const MAX_LEN: usize = 15;

    /// Parses and upper-cases a client name, refusing anything SPEC section 3 does not allow.
    pub fn parse(raw: &str) -> Result<ClientName, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(NameError::BadChar {
                shown: shown(raw),
                what: describe(c),
            });
        }
        // Only ASCII remains, so the byte length is the character count.
        if raw.len() > Self::MAX_LEN {
            return Err(NameError::TooLong {
                shown: shown(raw),
                len: raw.len(),
            });
        }
        if !raw.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(NameError::BadFirst { shown: shown(raw) });
        }
        Ok(ClientName(raw.to_ascii_uppercase()))
    }

    /// Derives a client name from a host name the way the agent does without `--name`: the first
    /// label, upper-cased, with characters outside the alphabet replaced by `-`, cut to 15.
    pub fn from_hostname(host: &str) -> Result<ClientName, NameError> {
        let label = host.trim().split('.').next().unwrap_or("");
        let cleaned: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(Self::MAX_LEN)
            .collect();
        ClientName::parse(&cleaned)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClientName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientName::parse(s)
    }
}

impl Serialize for ClientName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ClientName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A site code: exactly three characters of `A–Z 0–9`, held upper-case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteCode(String);

impl SiteCode {
    pub fn parse(raw: &str) -> Result<SiteCode, NameError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(SiteCode(raw.to_ascii_uppercase()))
        } else {
            Err(NameError::BadSiteCode { shown: shown(raw) })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SiteCode {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteCode::parse(s)
    }
}

impl Serialize for SiteCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SiteCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        SiteCode::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_uppercases() {
        assert_eq!(
            ClientName::parse("smsntcli8").unwrap().as_str(),
            "SMSNTCLI8"
        );
        assert_eq!(ClientName::parse("a").unwrap().as_str(), "A");
        assert_eq!(ClientName::parse("web-01_x").unwrap().as_str(), "WEB-01_X");
        assert_eq!(
            ClientName::parse("ABCDEFGHIJKLMNO").unwrap().as_str(),
            "ABCDEFGHIJKLMNO"
        );
    }

    #[test]
    fn refuses_what_spec_section_3_refuses() {
        for bad in [
            "",
            "ABCDEFGHIJKLMNOP",
            "../x",
            "..",
            "a/b",
            "a\\b",
            "a b",
            "a\u{7}b",
            "a\nb",
            "é",
            "WEB01é",
            "-lead",
            "_lead",
            "a.b",
            "\u{0}",
        ] {
            assert!(ClientName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn messages_say_why() {
        let e = ClientName::parse("ABCDEFGHIJKLMNOP")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("16 characters") && e.contains("at most 15"),
            "{e}"
        );
        let e = ClientName::parse("../x").unwrap_err().to_string();
        assert!(e.contains("'.'"), "{e}");
        let e = ClientName::parse("a\u{1b}[31m").unwrap_err().to_string();
        assert!(e.contains("U+001B") && !e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn derives_from_hostnames() {
        assert_eq!(
            ClientName::from_hostname("web01.example.com")
                .unwrap()
                .as_str(),
            "WEB01"
        );
        assert_eq!(
            ClientName::from_hostname("a-very-long-hostname-indeed")
                .unwrap()
                .as_str(),
            "A-VERY-LONG-HOS"
        );
        assert_eq!(
            ClientName::from_hostname("my host").unwrap().as_str(),
            "MY-HOST"
        );
        assert!(ClientName::from_hostname("").is_err());
    }

    #[test]
    fn site_codes() {
        assert_eq!(SiteCode::parse("s01").unwrap().as_str(), "S01");
        for bad in ["", "S1", "S001", "S-1", "S0é"] {
            assert!(SiteCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<ClientName>("\"../x\"").is_err());
        assert_eq!(
            serde_json::from_str::<ClientName>("\"web\"")
                .unwrap()
                .as_str(),
            "WEB"
        );
    }
}
