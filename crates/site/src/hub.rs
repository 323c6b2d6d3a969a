//! The push channel's switchboard. A connected agent keeps one long-poll request open
//! (`POST /cap/v1/wait`); when an instruction is queued for it, the site wakes that request
//! at once and the agent cycles. Nothing here is durable: instructions live in the store, and
//! the hub only shortens the wait for them.
//!
//! Each client has at most one `Notify` here. `wake` stores a permit when nobody is waiting,
//! so an instruction queued between two long-polls still wakes the next one, and permits do
//! not pile up: two wake-ups in a burst give one. Entries are never removed, because removing
//! one could drop a permit stored a moment before; the map grows to one small entry per
//! client that ever connected or was woken (about a hundred bytes each). An idle connection
//! costs its socket, the connection's task and a parked future; there is no task or buffer
//! per client beyond that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use invsync_proto::ClientName;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Hub {
    waiters: Mutex<HashMap<ClientName, Arc<Notify>>>,
    closing: Notify,
    closed: std::sync::atomic::AtomicBool,
    /// Notified at every wake-up, whoever it is for: the file-share CAP's loop writes the
    /// `.cfg` files then, since its clients hold no long-poll to wake.
    queued: Arc<Notify>,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// An instruction was queued: cycle now.
    Instruction,
    /// Nothing happened within the hold time: ask again.
    Timeout,
    /// The site is shutting down: reconnect later.
    Closing,
}

impl Hub {
    fn entry(&self, name: &ClientName) -> Arc<Notify> {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.clone()).or_default().clone()
    }

    /// Wakes the client's long-poll, now or when it next asks.
    pub fn wake(&self, name: &ClientName) {
        self.entry(name).notify_one();
        self.queued.notify_one();
    }

    /// What [`Hub::wake`] notifies for every client.
    pub fn queued(&self) -> Arc<Notify> {
        self.queued.clone()
    }

    /// How many clients are waiting right now (for metrics and tests).
    pub fn connected(&self) -> usize {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // An entry held only by the map is a stored permit, not a connection.
        map.values().filter(|n| Arc::strong_count(n) > 1).count()
    }

    /// Waits until the client is woken, `hold` passes, or the site shuts down.
    pub async fn wait(&self, name: &ClientName, hold: Duration) -> Woken {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Woken::Closing;
        }
        let notify = self.entry(name);
        let woken = tokio::select! {
            _ = notify.notified() => Woken::Instruction,
            _ = tokio::time::sleep(hold) => Woken::Timeout,
            _ = self.closing.notified() => Woken::Closing,
        };
        woken
    }

    /// Ends every wait at once (graceful shutdown must not hang on parked long-polls).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.closing.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> ClientName {
        ClientName::parse(n).unwrap()
    }

    #[tokio::test]
    async fn a_wake_before_the_wait_is_kept_and_bursts_collapse() {
        let hub = Hub::default();
        hub.wake(&name("a"));
        hub.wake(&name("a"));
        assert_eq!(
            hub.wait(&name("a"), Duration::from_secs(5)).await,
            Woken::Instruction
        );
        // The burst left one permit, not two.
        assert_eq!(
            hub.wait(&name("a"), Duration::from_millis(50)).await,
            Woken::Timeout
        );
    }

    #[tokio::test]
    async fn a_wake_reaches_a_waiting_client_only() {
        let hub = Arc::new(Hub::default());
        let h = hub.clone();
        let waiting = tokio::spawn(async move { h.wait(&name("a"), Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(hub.connected(), 1);
        hub.wake(&name("b"));
        hub.wake(&name("a"));
        assert_eq!(waiting.await.unwrap(), Woken::Instruction);
        assert_eq!(hub.connected(), 0);
        // b was not waiting: its permit waits for its next long-poll.
        assert_eq!(
            hub.wait(&name("b"), Duration::from_secs(5)).await,
            Woken::Instruction
        );
    }

    #[tokio::test]
    async fn closing_ends_every_wait() {
        let hub = Arc::new(Hub::default());
        let h = hub.clone();
        let waiting =
            tokio::spawn(async move { h.wait(&name("a"), Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.close();
        assert_eq!(waiting.await.unwrap(), Woken::Closing);
        assert_eq!(
            hub.wait(&name("a"), Duration::from_secs(30)).await,
            Woken::Closing
        );
    }
}
