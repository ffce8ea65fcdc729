//! An upstream's shared request clients, one per thread (worker threads and the main
//! runtime): lists, stateless backends, 2026-07-28 clients and hale's own requests go
//! through them. Only the main runtime's listens for the backend's notifications, which
//! go to the handler given at construction.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hale_mcp::{McpClient, McpError, Notification};
use serde_json::json;

use super::target::{ClientKind, Target};

/// What hears the listening client's notifications.
pub(crate) type Hear = Arc<dyn Fn(Notification) + Send + Sync>;

/// One thread's shared client.
#[derive(Default)]
struct Slot {
    client: RwLock<Option<Arc<McpClient>>>,
    /// Serialises connecting.
    connecting: tokio::sync::Mutex<()>,
    /// The lowest log level (rank) set on this client's session with `logging/setLevel`
    /// for 2026-07-28 callers; `u8::MAX`: none yet.
    log_level: AtomicU8,
}

/// The slots, by thread.
pub(crate) struct Shared {
    target: Target,
    slots: Vec<Slot>,
    hear: Hear,
}

impl Shared {
    /// `slots` shared clients of `target` (one per worker thread and one for the main
    /// runtime), whose notifications go to `hear`.
    pub(crate) fn new(target: Target, slots: usize, hear: Hear) -> Self {
        Shared {
            target,
            slots: (0..slots)
                .map(|_| Slot {
                    log_level: AtomicU8::new(u8::MAX),
                    ..Slot::default()
                })
                .collect(),
            hear,
        }
    }

    fn slot(&self) -> &Slot {
        &self.slots[crate::worker::slot(self.slots.len())]
    }

    fn is_main(&self) -> bool {
        crate::worker::slot(self.slots.len()) + 1 == self.slots.len()
    }

    /// Forgets this thread's client (a transport failure may have lost its session).
    pub(crate) fn reset(&self) {
        *self
            .slot()
            .client
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Closes every thread's client (the upstream is going away): the listening one's
    /// stream ends, sessions are deleted.
    pub(crate) async fn close_all(&self) {
        let clients: Vec<Arc<McpClient>> = self
            .slots
            .iter()
            .filter_map(|s| {
                s.client
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
            })
            .collect();
        futures_util::future::join_all(clients.iter().map(|c| c.close())).await;
    }

    /// This thread's shared client, connected on first use.
    pub(crate) async fn client(&self) -> Result<Arc<McpClient>, McpError> {
        let slot = self.slot();
        let current = || {
            slot.client
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        if let Some(client) = current() {
            return Ok(client);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(client) = current() {
            return Ok(client);
        }
        let listen = self.is_main();
        let client = Arc::new(self.target.connect(ClientKind::Shared { listen }).await?);
        let mut notes = client.notifications();
        let hear = self.hear.clone();
        tokio::spawn(async move {
            while let Ok(note) = notes.recv().await {
                hear(note);
            }
        });
        // A new session has no level set yet.
        slot.log_level.store(u8::MAX, Ordering::Release);
        *slot.client.write().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        Ok(client)
    }

    /// Lets a handshake-era backend's shared session send log lines down to `rank`
    /// (level `name`), for a 2026-07-28 caller that asked for them (`logging/setLevel`,
    /// once per lower level; other callers' lines are still filtered by the level each
    /// asks for).
    pub(crate) async fn lower_log_level(&self, rank: u8, name: &str) {
        let level = &self.slot().log_level;
        if rank >= level.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = self.client().await else {
            return;
        };
        if client.era().await.0 || !client.server_info().await.has("logging") {
            level.store(0, Ordering::Release); // nothing to set: never look again
            return;
        }
        if level.fetch_min(rank, Ordering::AcqRel) <= rank {
            return; // another request set it meanwhile
        }
        let _ = client
            .request("logging/setLevel", Some(json!({"level": name})))
            .await;
    }
}
