//! Client sessions' own backend sessions with one upstream: opened on a client's first
//! request that needs a stateful backend, with that client's capabilities and info, over
//! the upstream's keep-alive connections, within `maxSessionsPerBackend`; closed
//! (DELETE) when the client session ends or the upstream goes away.
//!
//! A backend session the backend lost is initialized again by hale-mcp, for that client
//! alone; what it sends outside any call goes to its [`Owner`] and nobody else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use hale_mcp::{McpClient, McpError, Notification, ServerInfo, codes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::target::{ClientKind, Target};

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
    /// The backend session this client session already has with `backend` elsewhere
    /// (opened by another replica, or before a restart), as the session store has it.
    fn resumed<'a>(
        &'a self,
        _backend: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Option<BackendSession>> {
        Box::pin(async { None })
    }
    /// Asks the client `request` (a backend's request outside any call, such as
    /// `roots/list` right after the handshake) on the client's own stream, and waits for
    /// its answer.
    fn ask_outside_calls(
        self: Arc<Self>,
        request: hale_mcp::ServerRequest,
    ) -> hale_mcp::ServerRequestFuture {
        Box::pin(async move {
            Err(hale_mcp::ServerRequestError {
                code: -32601,
                message: format!("{} cannot be relayed to this client", request.method),
            })
        })
    }
    /// Its backend session with `backend` is open (or was opened again) as `session`;
    /// done once that is recorded where it must be.
    fn opened(
        &self,
        _backend: &str,
        _session: BackendSession,
    ) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A client session's backend session, as the session store keeps it: enough for any
/// replica to go on with the same backend session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendSession {
    /// The backend's `Mcp-Session-Id`.
    pub id: String,
    /// The protocol version agreed with the backend.
    pub protocol_version: String,
}

type Cell = Arc<OnceCell<Arc<McpClient>>>;

/// One upstream's backend sessions, by client session id.
pub(crate) struct BackendSessions {
    target: Target,
    limit: u32,
    by_client: Mutex<HashMap<Arc<str>, Cell>>,
    /// Backend sessions open now.
    open: AtomicU32,
    /// What the limit did: sessions evicted, clients refused, when last.
    limits: crate::limits::LimitHits,
}

impl BackendSessions {
    /// No sessions yet; at most `limit` open at once.
    pub(crate) fn new(target: Target, limit: u32) -> Self {
        for outcome in ["evicted", "refused"] {
            // Exported from the start: an alert sees 0, not nothing.
            metrics::counter!("toolhive_vmcp_limit_hits_total", "limit" => "operational.maxSessionsPerBackend", "scope" => target.name().to_string(), "outcome" => outcome).increment(0);
        }
        BackendSessions {
            target,
            limit,
            by_client: Mutex::new(HashMap::new()),
            open: AtomicU32::new(0),
            limits: crate::limits::LimitHits::new("operational.maxSessionsPerBackend"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Cell>> {
        self.by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many are open now.
    pub(crate) fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// `owner`'s backend session, opened now if it has none (or, for a client session
    /// resumed from the store, taken over as it was, described by `shared`'s handshake).
    pub(crate) async fn get_or_open(
        &self,
        owner: &Arc<dyn Owner>,
        shared: &McpClient,
    ) -> Result<Arc<McpClient>, McpError> {
        let cell = {
            let mut by_client = self.lock();
            match by_client.get(owner.id()) {
                Some(cell) => cell.clone(),
                None => by_client.entry(Arc::from(owner.id())).or_default().clone(),
            }
        };
        cell.get_or_try_init(|| self.open_for(owner, shared))
            .await
            .cloned()
    }

    async fn open_for(
        &self,
        owner: &Arc<dyn Owner>,
        shared: &McpClient,
    ) -> Result<Arc<McpClient>, McpError> {
        let name = self.target.name().to_string();
        let limit = self.limit;
        let take_one = || {
            self.open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_ok()
        };
        // At the limit, the idlest backend session makes room (many clients leave without
        // DELETE); only when every one is busy right now is the client refused.
        while !take_one() {
            if !self.evict_idlest(owner.id()).await {
                self.limits.hit(&name, limit, "refused");
                metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name.clone(), "event" => "refused").increment(1);
                return Err(McpError::Rpc {
                    url: name.clone(),
                    method: "initialize".into(),
                    code: codes::LIMIT_REACHED,
                    message: format!(
                        "backend '{name}' has {limit} sessions open (operational.maxSessionsPerBackend), every one busy right now; try again in a moment"
                    ),
                    data: Some(
                        json!({"backend": name, "maxSessionsPerBackend": limit, "retryAfterSeconds": 1}),
                    ),
                });
            }
            self.limits.hit(&name, limit, "evicted");
        }
        let kind = || ClientKind::Session {
            capabilities: owner.capabilities().clone(),
            client_info: owner.client_info().clone(),
            asks: Some(asks_of(owner)),
        };
        // Resumed from the store: the same backend session, no new handshake.
        let resumed = match owner.resumed(&name).await {
            Some(was) => {
                let shared_info = shared.server_info().await;
                let info = ServerInfo {
                    protocol_version: was.protocol_version.clone(),
                    ..(*shared_info).clone()
                };
                self.target.resume(kind(), &was.id, info).await.ok()
            }
            None => None,
        };
        let event = if resumed.is_some() {
            "resumed"
        } else {
            "opened"
        };
        // On the request that needed it (another replica's session, taken over).
        super::traced::mark(hale_telemetry::names::RESUMED, resumed.is_some());
        let client = match resumed {
            Some(c) => Arc::new(c),
            None => match self.target.connect(kind()).await {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            },
        };
        metrics::gauge!("toolhive_vmcp_backend_sessions", "backend" => name.clone()).increment(1.0);
        metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name.clone(), "event" => event).increment(1);
        record(owner, &name, &client).await;
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

    /// Ends the backend session that has been idle longest and is not busy now (not
    /// `sparing`'s), with DELETE, to make room; false if every one is busy. Its client,
    /// if it comes back, gets a fresh backend session, as after a backend restart.
    async fn evict_idlest(&self, sparing: &str) -> bool {
        let victim = {
            let mut by_client = self.lock();
            let idlest = by_client
                .iter()
                .filter(|(id, _)| id.as_ref() != sparing)
                .filter_map(|(id, cell)| cell.get().map(|c| (id, c)))
                .filter(|(_, c)| !c.busy())
                .max_by_key(|(_, c)| c.idle_for())
                .map(|(id, _)| id.clone());
            idlest.and_then(|id| by_client.remove(&id))
        };
        let Some(client) = victim.as_ref().and_then(|c| c.get()) else {
            return false;
        };
        self.closed("evicted");
        let client = client.clone();
        tokio::spawn(async move { client.close().await });
        true
    }

    /// The limit's state, for `/status`.
    pub(crate) fn limit_status(&self) -> serde_json::Value {
        self.limits.status(self.limit, self.open())
    }

    /// Client session `id`'s backend session, if one is open.
    pub(crate) fn of(&self, id: &str) -> Option<Arc<McpClient>> {
        self.lock().get(id).and_then(|c| c.get().cloned())
    }

    /// Ends client session `id`'s backend session (DELETE), counting it as `event`
    /// (`closed`, `expired`).
    pub(crate) async fn close(&self, id: &str, event: &'static str) {
        let cell = self.lock().remove(id);
        if let Some(client) = cell.as_ref().and_then(|c| c.get()) {
            self.closed(event);
            client.close().await;
        }
    }

    /// Lets go of client session `id`'s backend session without ending it (another
    /// replica serves that client now, or will after a restart).
    pub(crate) fn forget(&self, id: &str) {
        let cell = self.lock().remove(id);
        if cell.as_ref().is_some_and(|c| c.get().is_some()) {
            self.closed("handed_over");
        }
    }

    /// Lets go of every backend session without ending them (shutdown, with sessions
    /// kept in a shared store).
    pub(crate) fn forget_all(&self) {
        let cells: Vec<Cell> = self.lock().drain().map(|(_, c)| c).collect();
        for _ in cells.iter().filter(|c| c.get().is_some()) {
            self.closed("handed_over");
        }
    }

    /// Ends backend session `session` of a client session this replica holds no client
    /// for (opened by another replica): DELETE through a client made for it.
    pub(crate) async fn end_elsewhere(&self, session: &BackendSession, shared: &McpClient) {
        let info = ServerInfo {
            protocol_version: session.protocol_version.clone(),
            ..(*shared.server_info().await).clone()
        };
        let kind = ClientKind::Session {
            capabilities: json!({}),
            client_info: json!({}),
            asks: None,
        };
        if let Ok(client) = self.target.resume(kind, &session.id, info).await {
            client.close().await;
        }
    }

    /// Ends every backend session.
    pub(crate) async fn close_all(&self, event: &'static str) {
        let cells: Vec<Cell> = self.lock().drain().map(|(_, c)| c).collect();
        let closing = cells.iter().filter_map(|c| c.get()).map(|client| {
            self.closed(event);
            client.close()
        });
        futures_util::future::join_all(closing).await;
    }

    fn closed(&self, event: &'static str) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        let name = self.target.name().to_string();
        metrics::gauge!("toolhive_vmcp_backend_sessions", "backend" => name.clone()).decrement(1.0);
        metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name, "event" => event).increment(1);
    }
}

/// Tells `owner` which backend session it has with `backend` now (opened, taken over, or
/// opened again after the backend lost the last one), so the session store has it.
pub(crate) async fn record(owner: &Arc<dyn Owner>, backend: &str, client: &McpClient) {
    if let Some(id) = client.session_id().await {
        let protocol_version = client.server_info().await.protocol_version.clone();
        owner
            .opened(
                backend,
                BackendSession {
                    id,
                    protocol_version,
                },
            )
            .await;
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

/// What answers a backend's requests outside any call on `owner`'s backend session: the
/// client itself, asked on its own stream.
fn asks_of(owner: &Arc<dyn Owner>) -> hale_mcp::ServerRequestHandler {
    let owner = Arc::downgrade(owner);
    Arc::new(
        move |request: hale_mcp::ServerRequest| match owner.upgrade() {
            Some(owner) => owner.ask_outside_calls(request),
            None => Box::pin(async {
                Err(hale_mcp::ServerRequestError {
                    code: -32603,
                    message: "the client session has ended".into(),
                })
            }),
        },
    )
}
