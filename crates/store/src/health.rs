//! Whether the database takes writes: the outcome of the last write, kept so the site's
//! `/healthz` can tell the truth (issue 15: with the disk full or the database read-only, every
//! write failed while `/healthz` answered 200).
//!
//! Every write of [`crate::Store`] passes its result through [`WriteHealth::record`]. A write the
//! database refused (a [`StoreError::Database`], or the store closed) makes the store
//! *unwritable* until a later write succeeds: the first such failure is logged once at ERROR
//! with what an operator should do, the following ones only counted, and the first success
//! after them logged at WARN. Refusals that are answers (a taken name, an unknown client, a bad
//! report) say nothing about the disk and change nothing. The error a caller receives becomes
//! [`StoreError::Unwritable`], which the site answers with 503 and does not log again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use invsync_proto::Timestamp;

use crate::StoreError;

/// Why the store is unwritable: the first failed write since it last wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// What was being written (`report`, `enroll`, `probe`, …).
    pub operation: &'static str,
    /// The database's own error.
    pub error: String,
    pub since: Timestamp,
}

/// The write health of one store, shared by all its clones.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    errors_total: AtomicU64,
    /// `failing.is_some()`, readable without the lock: a success is the common case (30,000
    /// check-ins a second), and it must not take a lock every other request takes too.
    unwritable: AtomicBool,
    failing: Mutex<Option<WriteFailure>>,
}

impl WriteHealth {
    /// Notes the outcome of a write and returns it, a database failure as
    /// [`StoreError::Unwritable`]. A success shows the database takes writes only when `wrote`
    /// says it wrote something: a check-in, a report answered "duplicate" or a request merged
    /// into a pending one read the database and wrote nothing (or only in memory), and with the
    /// disk full they still succeed.
    pub fn record<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                if self.unwritable.load(Ordering::Relaxed) && wrote(&value) {
                    self.succeeded(operation);
                }
                Ok(value)
            }
            Err(e @ (StoreError::Database(_) | StoreError::Closed)) => {
                let error = e.to_string();
                self.failed(operation, &error);
                Err(StoreError::Unwritable { operation, error })
            }
            Err(other) => Err(other),
        }
    }

    fn succeeded(&self, operation: &'static str) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        self.unwritable.store(false, Ordering::Relaxed);
        if let Some(was) = failing.take() {
            tracing::warn!(
                operation,
                failing_since = %was.since.rfc3339(),
                "The site's database takes writes again."
            );
        }
    }

    fn failed(&self, operation: &'static str, error: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if failing.is_none() {
            // Once per failure, however many requests then fail the same way: an operator must
            // act, and a log line per request would bury the one that says so.
            tracing::error!(
                operation,
                error,
                "The site's database refuses writes: reports, enrollments and requests fail until it \
                 takes them again. Check free space on its disk (df), that the database file and its \
                 directory are writable, or PostgreSQL's own log; no restart is needed once it is fixed."
            );
            *failing = Some(WriteFailure {
                operation,
                error: error.to_string(),
                since: Timestamp::now(),
            });
            self.unwritable.store(true, Ordering::Relaxed);
        }
    }

    /// The failure that made the store unwritable, if it is.
    pub fn failure(&self) -> Option<WriteFailure> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes refused by the database since the store was opened.
    pub fn errors_total(&self) -> u64 {
        self.errors_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_makes_the_store_unwritable_until_one_succeeds() {
        let h = WriteHealth::default();
        let always = |_: &()| true;
        assert_eq!(
            h.record("report", Ok::<_, StoreError>(1), |_| true)
                .unwrap(),
            1
        );
        assert_eq!(h.failure(), None);
        // An answer is not a failure of the disk.
        let e = h
            .record("enroll", Err(StoreError::Refused("no".into())), always)
            .unwrap_err();
        assert!(matches!(e, StoreError::Refused(_)));
        assert_eq!((h.failure(), h.errors_total()), (None, 0));

        let e = h
            .record(
                "report",
                Err(StoreError::Database("database or disk is full".into())),
                always,
            )
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Unwritable { operation: "report", error } if error.contains("disk is full")),
            "{e}"
        );
        h.record("enroll", Err(StoreError::Closed), always)
            .unwrap_err();
        let failure = h.failure().unwrap();
        assert_eq!(
            (failure.operation, h.errors_total()),
            ("report", 2),
            "the first failure is kept, both counted"
        );
        assert!(failure.error.contains("disk is full"));

        // A success that wrote nothing (a check-in) proves nothing.
        h.record("checkin", Ok(()), |_| false).unwrap();
        assert!(h.failure().is_some());
        h.record("probe", Ok(()), always).unwrap();
        assert_eq!((h.failure(), h.errors_total()), (None, 2));
    }
}
