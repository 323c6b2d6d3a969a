//! An agent's version as the site compares it (`invsite config --min-agent-version`): the
//! `MAJOR.MINOR.PATCH` of the agent's `User-Agent` (`invagent/0.1.0`), with an optional
//! pre-release suffix (`0.2.0-rc.1`), which sorts before its release as in Semantic Versioning.
//! Missing parts are zero (`1.2` is `1.2.0`), so an administrator may write the short form.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A parsed agent version; ordered numerically, a pre-release before its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentVersion {
    parts: [u64; 3],
    /// The pre-release suffix after `-`, if any (compared as text among pre-releases).
    pre: Option<String>,
}

/// The product name agents send before their version in `User-Agent`.
pub const AGENT_PRODUCT: &str = "invagent";

impl AgentVersion {
    /// The version in a `User-Agent` of the form `invagent/VERSION` (anything after a space
    /// ignored), or a bare version as stored; `None` for another product or a version that does
    /// not parse.
    pub fn from_user_agent(raw: &str) -> Option<AgentVersion> {
        let first = raw.split_whitespace().next()?;
        let version = match first.split_once('/') {
            Some((product, v)) if product == AGENT_PRODUCT => v,
            Some(_) => return None,
            None => first,
        };
        version.parse().ok()
    }
}

impl FromStr for AgentVersion {
    type Err = String;

    fn from_str(raw: &str) -> Result<AgentVersion, String> {
        let bad = || format!("{raw:?} is not a version (try 0.2.0 or 1.4)");
        if raw.len() > 64 {
            return Err(bad());
        }
        let (numbers, pre) = match raw.split_once('-') {
            Some((n, p)) => {
                let ok = !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !ok {
                    return Err(bad());
                }
                (n, Some(p.to_string()))
            }
            None => (raw, None),
        };
        let mut parts = [0u64; 3];
        for (i, piece) in numbers.split('.').enumerate() {
            let ok = !piece.is_empty() && piece.bytes().all(|b| b.is_ascii_digit());
            let slot = parts.get_mut(i).filter(|_| ok).ok_or_else(bad)?;
            *slot = piece.parse().map_err(|_| bad())?;
        }
        Ok(AgentVersion { parts, pre })
    }
}

impl Ord for AgentVersion {
    fn cmp(&self, other: &AgentVersion) -> Ordering {
        self.parts
            .cmp(&other.parts)
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for AgentVersion {
    fn partial_cmp(&self, other: &AgentVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.parts;
        write!(f, "{a}.{b}.{c}")?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(raw: &str) -> AgentVersion {
        raw.parse().unwrap()
    }

    #[test]
    fn versions_order_numerically_with_pre_releases_first() {
        assert!(v("0.1.0") < v("0.2.0"));
        assert!(v("0.10.0") > v("0.9.9"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert!(v("0.2.0-rc.1") < v("0.2.0"));
        assert!(v("0.2.0-rc.1") > v("0.1.9"));
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
    }

    #[test]
    fn bad_versions_are_refused() {
        for bad in [
            "",
            "notaversion",
            "1.2.3.4",
            "1..2",
            "v1.2",
            "1.2-",
            "1.2 3",
            "-1",
        ] {
            assert!(bad.parse::<AgentVersion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_agents_name_the_agent() {
        assert_eq!(
            AgentVersion::from_user_agent("invagent/0.1.0"),
            Some(v("0.1.0"))
        );
        assert_eq!(AgentVersion::from_user_agent("0.3.1"), Some(v("0.3.1")));
        assert_eq!(AgentVersion::from_user_agent("curl/8.0.1"), None);
        assert_eq!(AgentVersion::from_user_agent("invagent/x"), None);
    }
}
