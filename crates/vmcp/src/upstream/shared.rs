//! An upstream's shared request clients, one per thread (worker threads and the main
//! runtime): lists, stateless backends, 2026-07-28 clients and hale's own requests go
//! through them. Only the main runtime's listens for the backend's notifications
//! (`*/list_changed` drops the upstream's lists; resource updates go up as signals).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hale_mcp::{ClientOptions, McpClient, McpError};
use serde_json::{Value, json};

use super::Upstream;

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
pub(super) struct Shared {
    slots: Vec<Slot>,
}

impl Shared {
    pub(super) fn new(slots: usize) -> Self {
        Shared {
            slots: (0..slots)
                .map(|_| Slot {
                    log_level: AtomicU8::new(u8::MAX),
                    ..Slot::default()
                })
                .collect(),
        }
    }

    fn slot(&self) -> &Slot {
        &self.slots[crate::worker::slot(self.slots.len())]
    }

    fn is_main(&self) -> bool {
        crate::worker::slot(self.slots.len()) + 1 == self.slots.len()
    }

    /// Forgets this thread's client (a transport failure may have lost its session).
    pub(super) fn reset(&self) {
        *self
            .slot()
            .client
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Upstream {
    /// This thread's shared client, connected on first use.
    pub(crate) async fn client(self: &Arc<Self>) -> Result<Arc<McpClient>, McpError> {
        let slot = self.shared.slot();
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
        let listen = self.shared.is_main();
        let config = self.config();
        let options = ClientOptions {
            transport: config.transport,
            request_timeout: self.settings.request_timeout,
            client_name: "hale-vmcp".into(),
            // Sampling and elicitation requests are relayed to the calling client.
            relays_client_features: true,
            pool: Some(self.pool.clone()),
            // The main slot's session listens for list changes and updates; the
            // workers' would only say the same again.
            listen,
            max_list_items: Some(self.settings.max_list_items as usize),
            // 2026-07-28 where the backend speaks it; the handshake where it does not.
            era: hale_mcp::Era::Auto,
            credentials: Some(config.credentials.clone()),
            ..ClientOptions::default()
        };
        let client = Arc::new(McpClient::connect(&config.url, options).await?);
        self.hear(&client);
        // A new session has no level set yet.
        slot.log_level.store(u8::MAX, Ordering::Release);
        *slot.client.write().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        Ok(client)
    }

    /// What the backend says on a shared client outside any call: a list change makes
    /// this upstream's lists stale; a resource update goes to whoever subscribed. Log
    /// messages there belong to no client and stay here.
    fn hear(self: &Arc<Self>, client: &McpClient) {
        let mut notes = client.notifications();
        let upstream = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Ok(note) = notes.recv().await {
                let Some(upstream) = upstream.upgrade() else {
                    return;
                };
                if note.method.ends_with("/list_changed") {
                    // Stale: the catalog task lists this backend again and rebuilds.
                    upstream.forget_lists();
                    upstream.signals.changed.notify_one();
                } else if note.method == "notifications/resources/updated" {
                    let params = note.params.unwrap_or_default();
                    if let Some(uri) = params.get("uri").and_then(Value::as_str) {
                        upstream.signals.resource_updated(uri, &params);
                    }
                } else {
                    tracing::debug!(backend = %upstream.name(), method = %note.method, "a notification on the shared session; no client owns it");
                }
            }
        });
    }

    /// Lets a handshake-era backend's shared session send log lines down to `rank`, for
    /// a 2026-07-28 caller that asked for them (`logging/setLevel`, once per lower level;
    /// other callers' lines are still filtered by the level each asks for).
    pub(crate) async fn lower_shared_log_level(self: &Arc<Self>, rank: u8, name: &str) {
        let level = &self.shared.slot().log_level;
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

    /// True if the backend speaks the handshake era (it may send requests mid-call).
    pub(crate) async fn speaks_handshake(self: &Arc<Self>) -> bool {
        match self.client().await {
            Ok(client) => !client.era().await.0,
            Err(_) => false,
        }
    }

    /// Subscribes the shared client to `uri` (the backend's own URI): `resources/subscribe`
    /// on a handshake-era backend, the URI in the listen stream of a 2026-07-28 one.
    pub(crate) async fn subscribe_shared(self: &Arc<Self>, uri: &str) -> Result<(), McpError> {
        self.client().await?.subscribe_resource(uri).await
    }
}
