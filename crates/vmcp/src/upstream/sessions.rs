//! Client sessions' own backend sessions with this upstream: opened on a client's first
//! request that needs a stateful backend, with that client's capabilities and info, over
//! the upstream's keep-alive connections; closed (DELETE) when the client session ends
//! or the upstream goes away.
//!
//! Health and breaker stay per upstream and are fed by every client's calls; a backend
//! session the backend lost is initialized again by hale-mcp, for that client alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use hale_mcp::{ClientOptions, McpClient, McpError, Notification, codes};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::Upstream;

/// The client session a backend session is opened for: what the backend is told about
/// the client, and where what it says outside any call goes.
pub(crate) trait Owner: Send + Sync + 'static {
    /// The client session's id.
    fn id(&self) -> &str;
    /// The client's declared capabilities.
    fn capabilities(&self) -> &Value;
    /// The client's `clientInfo`.
    fn client_info(&self) -> &Value;
    /// The log level the client set, if any.
    fn log_level(&self) -> Option<Value>;
    /// The client set its log level (`logging/setLevel`).
    fn set_log_level(&self, level: Value);
    /// The client wants (`on`) or no longer wants updates of resource `uri` that arrive
    /// on a shared client (a backend that gives it no session of its own).
    fn watch_shared(&self, uri: &str, on: bool);
    /// A notification from the client's own backend session outside any call (its GET
    /// stream: resource updates, log messages). `*/list_changed` never comes here.
    fn notify(&self, note: Notification);
}

type Cell = Arc<OnceCell<Arc<McpClient>>>;

/// Backend sessions by client session id.
#[derive(Default)]
pub(super) struct BackendSessions {
    by_client: Mutex<HashMap<Arc<str>, Cell>>,
    /// Backend sessions open now (within `maxSessionsPerBackend`).
    open: AtomicU32,
}

impl BackendSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Cell>> {
        self.by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many are open now.
    pub(super) fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }
}

impl Upstream {
    /// The client that carries `owner`'s requests to this backend: the owner's own
    /// backend session for a stateful backend (opened now on first use, with the
    /// client's capabilities and info), else the shared one (stateless backends, modern
    /// clients, hale's own requests).
    pub(crate) async fn client_for(
        self: &Arc<Self>,
        owner: Option<&Arc<dyn Owner>>,
    ) -> Result<Arc<McpClient>, McpError> {
        let shared = self.client().await?;
        let Some(owner) = owner else {
            return Ok(shared);
        };
        let (modern, has_session) = shared.era().await;
        if !modern && !has_session {
            return Ok(shared); // a stateless backend: nothing to keep apart
        }
        if self.modern_only.load(Ordering::Relaxed) {
            return Ok(shared); // 2026-07-28 only: no sessions to keep apart
        }
        // A legacy client keeps its session semantics: where the backend takes the
        // handshake (a 2026-07-28 server may too, without saying so in discover), the
        // client gets a handshake-era session of its own, as it would directly.
        let cell = {
            let mut by_client = self.sessions.lock();
            match by_client.get(owner.id()) {
                Some(cell) => cell.clone(),
                None => by_client.entry(Arc::from(owner.id())).or_default().clone(),
            }
        };
        match cell.get_or_try_init(|| self.open_session(owner)).await {
            Ok(client) => Ok(client.clone()),
            Err(e) if modern && e.is_refused_handshake() => {
                // It refused the handshake: 2026-07-28 only, for every client.
                self.modern_only.store(true, Ordering::Relaxed);
                Ok(shared)
            }
            Err(e) => Err(e),
        }
    }

    /// Marks the backend as 2026-07-28 only (it stopped taking the handshake): its
    /// clients go through the shared session from now on.
    pub(super) fn set_modern_only(&self) {
        self.modern_only.store(true, Ordering::Relaxed);
    }

    /// Opens `owner`'s backend session, within `maxSessionsPerBackend`.
    async fn open_session(&self, owner: &Arc<dyn Owner>) -> Result<Arc<McpClient>, McpError> {
        let name = self.name().to_string();
        let limit = self.settings.max_sessions;
        let open = &self.sessions.open;
        if open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name.clone(), "event" => "refused").increment(1);
            return Err(McpError::Rpc {
                url: name.clone(),
                method: "initialize".into(),
                code: codes::LIMIT_REACHED,
                message: format!(
                    "backend '{name}' has {limit} sessions open (operational.maxSessionsPerBackend); try again when one closes"
                ),
                data: Some(json!({"backend": name, "maxSessionsPerBackend": limit})),
            });
        }
        let config = self.config();
        let options = ClientOptions {
            transport: config.transport,
            request_timeout: self.settings.request_timeout,
            client_name: "hale-vmcp".into(),
            capabilities: Some(owner.capabilities().clone()),
            client_info: Some(owner.client_info().clone()),
            // A session is a header, not a connection: no GET stream per client session
            // unless the client subscribes to something.
            listen: false,
            pool: Some(self.pool.clone()),
            // A client session's own backend session is a handshake-era session.
            era: hale_mcp::Era::Legacy,
            credentials: Some(config.credentials.clone()),
            ..ClientOptions::default()
        };
        let client = match McpClient::connect(&config.url, options).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                open.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        metrics::gauge!("toolhive_vmcp_backend_sessions", "backend" => name.clone()).increment(1.0);
        metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name, "event" => "opened").increment(1);
        forward_notifications(&client, Arc::downgrade(owner));
        if let Some(level) = owner.log_level()
            && client.server_info().await.has("logging")
        {
            let _ = client
                .request("logging/setLevel", Some(json!({"level": level})))
                .await;
        }
        Ok(client)
    }

    /// Client session `id`'s backend session, if one is open.
    pub(crate) fn session_of(&self, id: &str) -> Option<Arc<McpClient>> {
        self.sessions.lock().get(id).and_then(|c| c.get().cloned())
    }

    /// Ends client session `id`'s backend session (DELETE), counting it as `event`
    /// (`closed`, `expired`).
    pub(crate) async fn close_session(&self, id: &str, event: &'static str) {
        let cell = self.sessions.lock().remove(id);
        if let Some(client) = cell.as_ref().and_then(|c| c.get()) {
            self.closed(event);
            client.close().await;
        }
    }

    /// Ends every backend session (the upstream goes away, or the vMCP stops).
    pub(crate) async fn close_all_sessions(&self, event: &'static str) {
        let cells: Vec<Cell> = self.sessions.lock().drain().map(|(_, c)| c).collect();
        let closing = cells.iter().filter_map(|c| c.get()).map(|client| {
            self.closed(event);
            client.close()
        });
        futures_util::future::join_all(closing).await;
    }

    fn closed(&self, event: &'static str) {
        self.sessions.open.fetch_sub(1, Ordering::AcqRel);
        let name = self.name().to_string();
        metrics::gauge!("toolhive_vmcp_backend_sessions", "backend" => name.clone()).decrement(1.0);
        metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name, "event" => event).increment(1);
    }
}

/// What a backend session sends outside any call (its GET stream: resource updates, log
/// messages) goes to the client that owns it, and to nobody else.
fn forward_notifications(client: &Arc<McpClient>, owner: Weak<dyn Owner>) {
    let mut notes = client.notifications();
    tokio::spawn(async move {
        while let Ok(note) = notes.recv().await {
            let Some(owner) = owner.upgrade() else { return };
            if note.method.ends_with("/list_changed") {
                continue; // the catalog's business, announced by the vMCP itself
            }
            owner.notify(note);
        }
    });
}
