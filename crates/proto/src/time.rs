//! Timestamps: milliseconds since the Unix epoch, shown as RFC 3339 UTC with milliseconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with millisecond precision, as stored and as shown in `--json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_millis() as i64)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T13:08:09.123Z`.
    pub fn rfc3339(self) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, humantime::TimestampError> {
        let t = humantime::parse_rfc3339_weak(s)?;
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Ok(Timestamp(d.as_millis() as i64))
    }

    /// An RFC 3339 time, or an age counted back from now (`90m`, `2d`): what `--since` takes
    /// (`invsite history`, `invsite audit`, the console's audit page).
    pub fn parse_since(raw: &str) -> Result<Timestamp, String> {
        if let Ok(t) = Timestamp::parse_rfc3339(raw) {
            return Ok(t);
        }
        match humantime::parse_duration(raw) {
            Ok(age) => Ok(Timestamp(
                Timestamp::now().0 - i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
            )),
            Err(_) => Err(format!(
                "{raw:?} is neither an RFC 3339 time (2026-11-25T13:00:00Z) nor an age (90m, 2d)"
            )),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_millis() {
        let t = Timestamp(1_764_076_089_123);
        assert_eq!(t.rfc3339(), "2025-11-25T13:08:09.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()).unwrap(), t);
    }
}
