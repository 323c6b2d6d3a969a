//! The client keys a site accepted lately, kept in memory so a report's key can be vouched for
//! before its body is read (`cap/report.rs`); the credential extractors (`auth.rs`) fill it.

use std::collections::HashMap;
use std::sync::Mutex;

use invsync_proto::Digest;
use uuid::Uuid;

/// Client keys this site accepted lately, by client id: whether a report's key can be vouched
/// for without a read of its own before its body is read and decoded (`cap/report.rs`). Only a
/// key the store accepted is ever put here, and the store checks every report's key again
/// anyway, so an entry gone stale (the key revoked, or replaced by enrolling again) costs at
/// most one body decoded within the limits before the store refuses it. Bounded: when full,
/// it is emptied, and each client's next report costs one read more.
pub struct KnownKeys {
    map: Mutex<HashMap<Uuid, Digest>>,
}

/// The most keys remembered: about 64 bytes each, so at most ~13 MB, for a site of up to this
/// many clients reporting; beyond that, keys are forgotten and read again.
const KNOWN_KEYS_MAX: usize = 200_000;

impl Default for KnownKeys {
    fn default() -> KnownKeys {
        KnownKeys {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl KnownKeys {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Digest>> {
        // Entries are plain values; a panic elsewhere cannot leave one half-written.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this client's key was accepted lately with this hash (compared in constant
    /// time).
    pub fn vouch(&self, client_id: Uuid, key_hash: &Digest) -> bool {
        self.map()
            .get(&client_id)
            .is_some_and(|known| known.ct_eq(key_hash))
    }

    /// Remembers a key the store accepted. Only `ClientCredentials::accept` (`auth.rs`) calls
    /// it, with credentials the store just found valid.
    pub fn remember(&self, client_id: Uuid, key_hash: Digest) {
        let mut map = self.map();
        if map.len() >= KNOWN_KEYS_MAX && !map.contains_key(&client_id) {
            map.clear();
        }
        map.insert(client_id, key_hash);
    }
}
