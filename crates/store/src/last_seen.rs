//! Last-seen times waiting to be written.
//!
//! Every check-in updates a client's last-seen time, but writing a row per check-in would make
//! the writer the limit of the check-in rate (SPEC section 10 asks for 30,000 no-change
//! check-ins per second). The times are therefore kept here and the writer writes them in one
//! statement group about once a second. Reads in this process overlay the pending times, so
//! they see a check-in at once; other processes see it after the next write, and a crash loses
//! at most the last second of last-seen times, which are not inventory.

use std::collections::HashMap;
use std::sync::Mutex;

use invsync_proto::Timestamp;

/// Pending last-seen times by internal client row id.
#[derive(Default)]
pub(crate) struct LastSeen {
    pending: Mutex<HashMap<i64, i64>>,
}

impl LastSeen {
    /// Notes that a client was seen at `at` (later times win).
    pub fn record(&self, client: i64, at: Timestamp) {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let t = map.entry(client).or_insert(at.0);
        *t = (*t).max(at.0);
    }

    /// The times to write now. They stay pending until [`LastSeen::forget`] after the commit, so
    /// a read between the two still sees them.
    pub fn pending(&self) -> Vec<(i64, i64)> {
        let map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(c, t)| (*c, *t)).collect()
    }

    /// Drops the times that were written, unless a later check-in replaced one meanwhile.
    pub fn forget(&self, written: &[(i64, i64)]) {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (c, t) in written {
            if map.get(c).is_some_and(|pending| pending <= t) {
                map.remove(c);
            }
        }
    }

    /// The later of the stored time and a pending one.
    pub fn overlay(&self, client: i64, stored: Option<Timestamp>) -> Option<Timestamp> {
        let map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match (stored, map.get(&client)) {
            (Some(s), Some(p)) => Some(Timestamp(s.0.max(*p))),
            (None, Some(p)) => Some(Timestamp(*p)),
            (s, None) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_times_win_and_survive_a_flush() {
        let s = LastSeen::default();
        s.record(1, Timestamp(10));
        s.record(1, Timestamp(5));
        let written = s.pending();
        assert_eq!(written, vec![(1, 10)]);
        s.record(1, Timestamp(20));
        s.forget(&written);
        assert_eq!(s.overlay(1, Some(Timestamp(10))), Some(Timestamp(20)));
        s.forget(&s.pending());
        assert_eq!(s.overlay(1, Some(Timestamp(20))), Some(Timestamp(20)));
        assert_eq!(s.overlay(2, None), None);
    }
}
