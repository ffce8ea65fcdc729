//! The vMCP server: one MCP endpoint (rmcp, streamable HTTP) over the backends, with the
//! breaker on the request path, the catalog of routable backends, `list_changed` to every
//! client session, and the status endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hale_core::{CallOutcome, HealthState};
use hale_mcp::{
    ClientOptions, McpClient, McpError, ServerRequest, ServerRequestError, ServerRequestHandler,
};
// Logging is deprecated by SEP-2577 (protocol 2026-07-28), but the versions clients and
// servers speak today have it: the vMCP relays it for them.
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, ErrorData, GetPromptRequestParams,
    GetPromptResponse, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressToken,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, SetLevelRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Peer, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::aggregate::{self, BackendLists, Catalog};
use crate::backend::Backend;
use crate::config::{PartialFailureMode, VmcpConfig};
use crate::monitor::FirstRound;

/// Which advertised lists a rebuild changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListsChanged {
    /// `tools/list`.
    pub tools: bool,
    /// `resources/list` or `resources/templates/list`.
    pub resources: bool,
    /// `prompts/list`.
    pub prompts: bool,
}

impl ListsChanged {
    fn any(self) -> bool {
        self.tools || self.resources || self.prompts
    }

    fn merge(&mut self, other: ListsChanged) {
        self.tools |= other.tools;
        self.resources |= other.resources;
        self.prompts |= other.prompts;
    }
}

/// Everything the server shares between sessions and tasks.
pub struct State {
    /// The configuration.
    pub config: VmcpConfig,
    /// The backends, in configuration order.
    pub backends: Vec<Arc<Backend>>,
    clients: Vec<tokio::sync::Mutex<Option<Arc<McpClient>>>>,
    lists: Mutex<HashMap<String, Arc<BackendLists>>>,
    catalog: RwLock<Arc<Catalog>>,
    /// Every tool's backend, routable or not (rebuilt with the catalog): how a call to a
    /// withdrawn tool learns whose it is without any work.
    owners: Mutex<HashMap<String, String>>,
    sessions: Mutex<Vec<Peer<RoleServer>>>,
    /// Calls in flight that asked for progress: the token sent to the backend (unique
    /// across all clients) → the session that asked and the token it chose.
    progress: Mutex<HashMap<String, (Peer<RoleServer>, ProgressToken)>>,
    next_progress: std::sync::atomic::AtomicU64,
    /// Changes made by any rebuild (the catalog task's or a request's) that clients have
    /// not been told about yet.
    unsent: Mutex<ListsChanged>,
    /// Woken when routability or a backend's lists changed.
    pub changed: Arc<Notify>,
    /// Backends checked at least once.
    pub first_round: Arc<FirstRound>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Builds the backends' state from a checked configuration.
    pub fn new(config: VmcpConfig) -> Result<Arc<Self>, hale_core::ConfigError> {
        let mut backends = Vec::new();
        for b in &config.backends {
            backends.push(Arc::new(Backend::new(
                b.clone(),
                &config.health,
                &config.breaker,
                config.breaker_enabled,
            )?));
        }
        let clients = backends
            .iter()
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        Ok(Arc::new(State {
            config,
            backends,
            clients,
            lists: Mutex::new(HashMap::new()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            owners: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Vec::new()),
            progress: Mutex::new(HashMap::new()),
            next_progress: std::sync::atomic::AtomicU64::new(1),
            unsent: Mutex::new(ListsChanged::default()),
            changed: Arc::new(Notify::new()),
            first_round: Arc::new(FirstRound::default()),
        }))
    }

    fn index(&self, backend: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.config.name == backend)
    }

    /// The request-path client of backend `i`, connected on first use. Its notifications
    /// (`*/list_changed`) refresh that backend's lists.
    async fn client(self: &Arc<Self>, i: usize) -> Result<Arc<McpClient>, McpError> {
        let mut slot = self.clients[i].lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let b = &self.backends[i];
        let options = ClientOptions {
            transport: b.config.transport,
            request_timeout: self.config.timeout_for(&b.config.name),
            client_name: "hale-vmcp".into(),
            // Sampling and elicitation requests are relayed to the calling client.
            relays_client_features: true,
            ..ClientOptions::default()
        };
        let client = Arc::new(McpClient::connect(&b.config.url, options).await?);
        let mut notes = client.notifications();
        let state = Arc::downgrade(self);
        let name = b.config.name.clone();
        tokio::spawn(async move {
            while let Ok(note) = notes.recv().await {
                let Some(state) = state.upgrade() else { return };
                if note.method.ends_with("/list_changed") {
                    // Stale: the catalog task lists this backend again and rebuilds.
                    state
                        .lists
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&name);
                    state.changed.notify_one();
                } else {
                    state.relay(&name, note).await;
                }
            }
        });
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Calls backend `i` through its breaker; the outcome feeds the breaker.
    async fn call(
        self: &Arc<Self>,
        i: usize,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.call_answering(i, method, params, None).await
    }

    /// Like [`call`](Self::call); the backend's own requests made while it answers
    /// (sampling, elicitation) go to `answering`.
    async fn call_answering(
        self: &Arc<Self>,
        i: usize,
        method: &str,
        params: Value,
        answering: Option<&ServerRequestHandler>,
    ) -> Result<Value, String> {
        self.guarded(i, method, false, async |client| match answering {
            Some(handler) => {
                client
                    .request_answering(method, Some(params), handler)
                    .await
            }
            None => client.request(method, Some(params)).await,
        })
        .await
    }

    /// Runs `op` on backend `i`'s request client if its breaker admits it, and feeds the
    /// outcome to the breaker and the request metrics (labelled `method`), and a failure
    /// to the health tracker too when `feeds_health` (fan-outs).
    async fn guarded<T>(
        self: &Arc<Self>,
        i: usize,
        method: &str,
        feeds_health: bool,
        op: impl AsyncFnOnce(Arc<McpClient>) -> Result<T, McpError>,
    ) -> Result<T, String> {
        let backend = &self.backends[i];
        let permit = match backend.breaker.try_acquire() {
            Ok(p) => p,
            Err(rejected) => {
                metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => backend.config.name.clone()).increment(1);
                return Err(format!(
                    "circuit {} (retry after {:?})",
                    rejected.state, rejected.retry_after
                ));
            }
        };
        let started = tokio::time::Instant::now();
        let result = match self.client(i).await {
            Ok(client) => op(client).await,
            Err(e) => Err(e),
        };
        let name = backend.config.name.clone();
        metrics::histogram!("toolhive_vmcp_backend_requests_duration_seconds", "backend" => name.clone(), "method" => method.to_string())
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => e.call_outcome(),
        };
        let label = if outcome == CallOutcome::Success {
            "success"
        } else {
            "failure"
        };
        metrics::counter!("toolhive_vmcp_backend_requests_total", "backend" => name.clone(), "method" => method.to_string(), "outcome" => label).increment(1);
        if feeds_health
            && let Err(e) = &result
            && e.category().is_some()
        {
            // A list refresh is a fan-out: its failure counts with the tracker too.
            let changes = backend.record_fan_out_failure(e.check_outcome(started.elapsed()));
            crate::monitor::report(backend, &changes, &self.changed);
        }
        if let Err(e) = &result
            && let Some(category) = e.category()
        {
            metrics::counter!("toolhive_vmcp_backend_errors_total", "backend" => name.clone(), "method" => method.to_string(), "category" => category.as_str()).increment(1);
            // A transport failure may also have lost the session: start afresh next time.
            *self.clients[i].lock().await = None;
        }
        let was_routable = backend.routable();
        if let Some(t) = permit.record(outcome) {
            let changes = crate::backend::Changes {
                health: None,
                circuit: Some(t),
                routability_changed: was_routable != backend.routable(),
            };
            crate::monitor::report(backend, &changes, &self.changed);
        }
        result.map_err(|e| e.to_string())
    }

    /// Fetches backend `i`'s lists (the capabilities it declared).
    async fn refresh(self: &Arc<Self>, i: usize) -> Result<(), String> {
        let name = self.backends[i].config.name.clone();
        // One admission for the whole refresh: its failure feeds the breaker like a call's.
        let lists = self
            .guarded(i, "tools/list", true, async |client| {
                let info = client.server_info().await;
                let mut lists = BackendLists {
                    backend: name.clone(),
                    ..BackendLists::default()
                };
                if info.has("tools") {
                    lists.tools = client.list_tools().await?;
                }
                if info.has("resources") {
                    lists.resources = client.list_resources().await?;
                    lists.templates = client.list_resource_templates().await.unwrap_or_default();
                }
                if info.has("prompts") {
                    lists.prompts = client.list_prompts().await?;
                }
                Ok(lists)
            })
            .await?;
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, Arc::new(lists));
        Ok(())
    }

    /// Refreshes every routable backend's lists at once; returns the failures (under
    /// `fail`, only the first: the rest are cancelled).
    async fn fan_out(self: &Arc<Self>) -> Vec<(String, String)> {
        use futures_util::StreamExt;
        let stop_at_first = self.config.partial_failure_mode == PartialFailureMode::Fail;
        let mut branches: futures_util::stream::FuturesUnordered<_> = (0..self.backends.len())
            .filter(|&i| self.backends[i].routable())
            .map(|i| {
                let state = self.clone();
                async move { (i, state.refresh(i).await) }
            })
            .collect();
        let mut failures = Vec::new();
        while let Some((i, result)) = branches.next().await {
            if let Err(e) = result {
                let name = self.backends[i].config.name.clone();
                metrics::counter!("toolhive_vmcp_partial_failures_total", "backend" => name.clone()).increment(1);
                failures.push((name, e));
                if stop_at_first {
                    // `fail`: the answer is an error now; the other branches are cancelled
                    // (dropped) rather than awaited.
                    break;
                }
            }
        }
        failures
    }

    /// Rebuilds the catalog from the routable backends' lists; says which lists clients
    /// see changed. The change is also kept for the next notification, so a rebuild
    /// done by a request (which then wakes the catalog task) cannot swallow it.
    pub async fn rebuild(&self) -> ListsChanged {
        // Arcs: a rebuild shares the cached lists instead of copying them.
        let (lists, all, listed) = {
            let cached = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
            let (mut routable, mut all, mut listed) = (Vec::new(), Vec::new(), Vec::new());
            for b in &self.backends {
                if let Some(l) = cached.get(&b.config.name) {
                    all.push(l.clone());
                    listed.push(b);
                    if b.routable() {
                        routable.push(l.clone());
                    }
                }
            }
            (routable, all, listed)
        };
        let catalog =
            match aggregate::build(&self.config.conflict_resolution, &self.config.tools, &lists) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    return ListsChanged::default();
                }
            };
        // Whose is each tool, withdrawn backends included. With every listed backend
        // routable (the usual case) that is the catalog's own routing table.
        let everything = if all.len() == lists.len() {
            Some(catalog.tool_routes.clone())
        } else {
            aggregate::build(&self.config.conflict_resolution, &self.config.tools, &all)
                .ok()
                .map(|c| c.tool_routes)
        };
        if let Some(routes) = everything {
            // What each backend offers clients when routable, after filters and conflict
            // resolution: the `tools` of `/status` and `hale status`.
            let mut offered: HashMap<&str, usize> = HashMap::new();
            for route in routes.values() {
                *offered.entry(route.backend.as_str()).or_default() += 1;
            }
            for b in listed {
                b.set_tools(offered.get(b.config.name.as_str()).copied().unwrap_or(0));
            }
            *self.owners.lock().unwrap_or_else(PoisonError::into_inner) = routes
                .iter()
                .map(|(name, route)| (name.clone(), route.backend.clone()))
                .collect();
        }
        metrics::gauge!("toolhive_vmcp_catalog_tools").set(catalog.tools.len() as f64);
        metrics::gauge!("toolhive_vmcp_routable_backends")
            .set(self.backends.iter().filter(|b| b.routable()).count() as f64);
        let mut current = self.catalog.write().await;
        // A conflict that persists is logged once, when it appears, not at every rebuild.
        for warning in catalog
            .warnings
            .iter()
            .filter(|w| !current.warnings.contains(w))
        {
            tracing::warn!("{warning}");
        }
        let changed = ListsChanged {
            tools: current.tools != catalog.tools,
            resources: current.resources != catalog.resources
                || current.templates != catalog.templates,
            prompts: current.prompts != catalog.prompts,
        };
        *current = Arc::new(catalog);
        self.unsent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(changed);
        changed
    }

    /// Passes a backend's log message or resource update on to every client session.
    /// The vMCP holds one session per backend for all its clients, so these cannot be
    /// told apart per client: every session gets them (the level set last, by any
    /// client, applies to all).
    #[allow(deprecated)] // logging: see the note on the imports
    async fn relay(&self, backend: &str, note: hale_mcp::Notification) {
        let params = note.params.unwrap_or_default();
        let peers: Vec<Peer<RoleServer>> = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match note.method.as_str() {
            "notifications/message" => {
                let Ok(mut message) =
                    serde_json::from_value::<rmcp::model::LoggingMessageNotificationParam>(params)
                else {
                    return;
                };
                // Say which backend spoke, unless it named its logger itself.
                message.logger.get_or_insert_with(|| backend.to_string());
                for peer in peers {
                    let _ = peer.notify_logging_message(message.clone()).await;
                }
            }
            "notifications/progress" => {
                // Only to the session whose call it is, under the token it chose.
                let Ok(mut progress) =
                    serde_json::from_value::<rmcp::model::ProgressNotificationParam>(params)
                else {
                    return;
                };
                let ours = match &progress.progress_token.0 {
                    rmcp::model::NumberOrString::String(s) => s.to_string(),
                    rmcp::model::NumberOrString::Number(n) => n.to_string(),
                };
                let Some((peer, theirs)) = self
                    .progress
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&ours)
                    .cloned()
                else {
                    return;
                };
                progress.progress_token = theirs;
                let _ = peer.notify_progress(progress).await;
            }
            "notifications/resources/updated" => {
                let Ok(update) =
                    serde_json::from_value::<rmcp::model::ResourceUpdatedNotificationParam>(params)
                else {
                    return;
                };
                for peer in peers {
                    let _ = peer.notify_resource_updated(update.clone()).await;
                }
            }
            _ => {}
        }
    }

    /// Sends `logging/setLevel` to every routable backend that logs; failures are
    /// ignored (a backend that cannot set its level still works).
    async fn set_level_everywhere(self: &Arc<Self>, level: Value) {
        let targets: Vec<usize> = (0..self.backends.len())
            .filter(|&i| self.backends[i].routable())
            .collect();
        futures_util::future::join_all(targets.into_iter().map(|i| {
            let level = level.clone();
            async move {
                let logs = match self.client(i).await {
                    Ok(client) => client.server_info().await.has("logging"),
                    Err(_) => false,
                };
                if logs {
                    let _ = self
                        .call(i, "logging/setLevel", json!({"level": level}))
                        .await;
                }
            }
        }))
        .await;
    }

    /// A rebuild on a request's path: the catalog task sends the notification it calls for.
    async fn rebuild_on_request(&self) {
        if self.rebuild().await.any() {
            self.changed.notify_one();
        }
    }

    /// Sends the `list_changed` notifications `changed` calls for to every connected
    /// session, forgetting sessions that are gone.
    pub async fn notify_sessions(&self, changed: ListsChanged) {
        if !changed.any() {
            return;
        }
        let peers: Vec<Peer<RoleServer>> = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut alive = Vec::new();
        for peer in peers {
            let mut ok = true;
            if changed.tools {
                ok &= peer.notify_tool_list_changed().await.is_ok();
            }
            if changed.resources {
                ok &= peer.notify_resource_list_changed().await.is_ok();
            }
            if changed.prompts {
                ok &= peer.notify_prompt_list_changed().await.is_ok();
            }
            if ok {
                alive.push(peer);
            }
        }
        metrics::counter!("toolhive_vmcp_list_changed_notifications_total")
            .increment(alive.len() as u64);
        *self.sessions.lock().unwrap_or_else(PoisonError::into_inner) = alive;
    }

    /// Keeps the catalog in step with the backends until `cancel`: on every change,
    /// fetch lists of backends that became routable, rebuild, and notify clients once per
    /// burst of changes.
    pub async fn maintain_catalog(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.changed.notified() => {}
            }
            // Coalesce a burst of changes into one rebuild and one notification.
            tokio::time::sleep(Duration::from_millis(50)).await;
            for i in 0..self.backends.len() {
                let known = self
                    .lists
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains_key(&self.backends[i].config.name);
                if self.backends[i].routable()
                    && !known
                    && let Err(e) = self.refresh(i).await
                {
                    tracing::warn!(backend = %self.backends[i].config.name, error = %e, "cannot list the backend's capabilities");
                }
            }
            self.rebuild().await;
            let unsent =
                std::mem::take(&mut *self.unsent.lock().unwrap_or_else(PoisonError::into_inner));
            self.notify_sessions(unsent).await;
        }
    }

    /// The backend that offers tool `name` when every backend is counted, routable or
    /// not: how a call to a withdrawn tool learns whose it is.
    fn owner_of_tool(&self, name: &str) -> Option<String> {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Lists the routable backends whose lists were never fetched (or were dropped as
    /// stale); true if there were any. Nothing is asked of backends already listed.
    async fn refresh_unlisted(self: &Arc<Self>) -> bool {
        let unlisted: Vec<usize> = {
            let cached = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
            (0..self.backends.len())
                .filter(|&i| {
                    self.backends[i].routable()
                        && !cached.contains_key(&self.backends[i].config.name)
                })
                .collect()
        };
        let refreshed = !unlisted.is_empty();
        futures_util::future::join_all(unlisted.into_iter().map(|i| self.refresh(i))).await;
        refreshed
    }

    /// The catalog as clients see it now.
    pub async fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().await.clone()
    }
}

/// The rmcp handler: one per client session, all sharing [`State`].
#[derive(Clone, Debug)]
pub struct Handler {
    state: Arc<State>,
}

impl Handler {
    /// A handler over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Handler { state }
    }

    /// The error for a call to a known backend that cannot take it now.
    /// `refused`: the call was not sent (counted as a rejection when the circuit is open).
    fn unavailable(&self, i: usize, refused: bool, why: &str) -> ErrorData {
        let b = &self.state.backends[i];
        let snap = b.breaker.snapshot();
        if refused && snap.state == hale_core::BreakerState::Open {
            metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => b.config.name.clone()).increment(1);
        }
        let retry = snap.retry_at.map(|at| {
            at.saturating_duration_since(std::time::Instant::now())
                .as_secs()
        });
        ErrorData::new(
            ErrorCode(-32000),
            format!("backend '{}' is unavailable: {why}", b.config.name),
            Some(json!({
                "backend": b.config.name,
                "health": b.health().as_str(),
                "circuit": snap.state.as_str(),
                "retryAfterSeconds": retry,
            })),
        )
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        field: &str,
        pick: impl Fn(&Catalog) -> Vec<Value>,
    ) -> Result<T, ErrorData> {
        let failures = self.state.fan_out().await;
        if !failures.is_empty()
            && self.state.config.partial_failure_mode == PartialFailureMode::Fail
        {
            let detail: Vec<String> = failures.iter().map(|(b, e)| format!("{b}: {e}")).collect();
            return Err(ErrorData::new(
                ErrorCode(-32000),
                format!("backends failed: {}", detail.join("; ")),
                Some(
                    json!({"failures": failures.iter().map(|(b, e)| json!({"backend": b, "error": e})).collect::<Vec<_>>()}),
                ),
            ));
        }
        self.state.rebuild_on_request().await;
        let catalog = self.state.catalog().await;
        let mut result = json!({ field: pick(&catalog) });
        if !failures.is_empty() {
            result["_meta"] = json!({"hale/partialFailures": failures.iter().map(|(b, e)| json!({"backend": b, "error": e})).collect::<Vec<_>>()});
        }
        serde_json::from_value(result).map_err(|e| {
            ErrorData::new(
                ErrorCode(-32603),
                format!("cannot convert the list: {e}"),
                None,
            )
        })
    }

    /// Sends a request about one resource (`resources/subscribe`, `…/unsubscribe`) to
    /// the backend that offers it.
    async fn resource_request(&self, method: &str, uri: &str) -> Result<(), ErrorData> {
        let Some(route) = self.state.catalog().await.route_resource(uri) else {
            return Err(ErrorData::new(
                ErrorCode(-32002),
                format!("resource not found: {uri}"),
                None,
            ));
        };
        self.forward(&route.backend, method, json!({"uri": route.original}))
            .await
            .map(|_| ())
    }

    async fn forward(
        &self,
        backend: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, ErrorData> {
        self.forward_answering(backend, method, params, None).await
    }

    async fn forward_answering(
        &self,
        backend: &str,
        method: &str,
        params: Value,
        answering: Option<&ServerRequestHandler>,
    ) -> Result<Value, ErrorData> {
        let Some(i) = self.state.index(backend) else {
            return Err(ErrorData::new(
                ErrorCode(-32602),
                format!("unknown backend {backend}"),
                None,
            ));
        };
        let b = &self.state.backends[i];
        // Health from the cache; the breaker itself refuses (lock-free while closed).
        let health = b.health();
        if matches!(
            health,
            HealthState::Unhealthy | HealthState::Unauthenticated
        ) {
            let circuit = b.breaker.snapshot().state;
            return Err(self.unavailable(i, true, &format!("health {health}, circuit {circuit}")));
        }
        self.state
            .call_answering(i, method, params, answering)
            .await
            .map_err(|e| self.unavailable(i, false, &e))
    }
}

/// Relays a backend's request to the client whose call (`call`) it belongs to
/// (sampling, elicitation, roots), as whatever typed request rmcp knows it as, on that
/// call's own stream.
fn ask_the_client(peer: Peer<RoleServer>, call: rmcp::model::RequestId) -> ServerRequestHandler {
    Arc::new(move |request: ServerRequest| {
        let (peer, call) = (peer.clone(), call.clone());
        Box::pin(async move {
            let refused = |code: i64, message: String| ServerRequestError { code, message };
            let mut typed: rmcp::model::ServerRequest = serde_json::from_value(json!({
                "method": request.method,
                "params": request.params.unwrap_or_else(|| json!({})),
            }))
            .map_err(|e| refused(-32602, format!("cannot relay {}: {e}", request.method)))?;
            // Ride the call's SSE stream (SEP-2260), where the client expects it, rather
            // than the session's standalone stream.
            rmcp::model::GetExtensions::extensions_mut(&mut typed)
                .insert(rmcp::service::OriginatingRequestId(call));
            match peer.send_request(typed).await {
                Ok(answer) => serde_json::to_value(answer)
                    .map_err(|e| refused(-32603, format!("cannot relay the answer: {e}"))),
                Err(rmcp::service::ServiceError::McpError(e)) => {
                    Err(refused(i64::from(e.code.0), e.message.to_string()))
                }
                Err(e) => Err(refused(-32603, format!("the client did not answer: {e}"))),
            }
        })
    })
}

/// Forgets a call's progress token when the call ends, however it ends (a cancelled
/// call drops its future).
struct ProgressGuard<'a> {
    state: &'a State,
    token: String,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        self.state
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.token);
    }
}

fn convert<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value).map_err(|e| {
        ErrorData::new(
            ErrorCode(-32603),
            format!("the backend's answer does not fit MCP: {e}"),
            None,
        )
    })
}

impl ServerHandler for Handler {
    #[allow(deprecated)] // logging: see the note on the imports
    fn get_info(&self) -> InitializeResult {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources_subscribe()
            .enable_logging()
            .build();
        let mut info = InitializeResult::new(capabilities);
        info.server_info.name = self.state.config.name.clone();
        info.server_info.version = env!("CARGO_PKG_VERSION").into();
        info
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.state
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(context.peer);
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.list("tools", |c| c.tools.clone()).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let lookup = |catalog: &Catalog| catalog.tool_routes.get(request.name.as_ref()).cloned();
        let mut route = lookup(&*self.state.catalog().await);
        if route.is_none() {
            // Not advertised now. If its backend is routable, the catalog has not caught
            // up yet (it is rebuilt 50 ms after a change); if nobody offers it, a backend
            // may not have been listed yet. Either way, catch up once, asking only the
            // backends never listed: a client hammering a withdrawn or unknown tool must
            // not turn into list requests to every healthy backend.
            let owner = self.state.owner_of_tool(&request.name);
            let stale = owner
                .as_deref()
                .and_then(|b| self.state.index(b))
                .is_some_and(|i| self.state.backends[i].routable());
            if stale || (owner.is_none() && self.state.refresh_unlisted().await) {
                self.state.rebuild_on_request().await;
                route = lookup(&*self.state.catalog().await);
            }
        }
        let Some(route) = route else {
            // A withdrawn backend's tool: say whose it is and why, so the client knows it
            // will come back.
            if let Some(backend) = self.state.owner_of_tool(&request.name)
                && let Some(i) = self.state.index(&backend)
            {
                let b = &self.state.backends[i];
                return Err(self.unavailable(
                    i,
                    true,
                    &format!(
                        "health {}, circuit {}",
                        b.health(),
                        b.breaker.snapshot().state
                    ),
                ));
            }
            return Err(ErrorData::new(
                ErrorCode(-32602),
                format!("unknown tool: {}", request.name),
                None,
            ));
        };
        let mut params =
            json!({"name": route.original, "arguments": request.arguments.unwrap_or_default()});
        // Progress: the backend gets a token of ours, mapped back while the call runs.
        let progress = context.meta.get_progress_token().map(|theirs| {
            let n = self
                .state
                .next_progress
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let ours = format!("hale-{n}");
            self.state
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(ours.clone(), (context.peer.clone(), theirs));
            params["_meta"] = json!({"progressToken": ours});
            ProgressGuard {
                state: &self.state,
                token: ours,
            }
        });
        let answering = ask_the_client(context.peer.clone(), context.id.clone());
        let result = self
            .forward_answering(&route.backend, "tools/call", params, Some(&answering))
            .await;
        drop(progress);
        Ok(CallToolResponse::Complete(convert(result?)?))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.list("resources", |c| c.resources.clone()).await
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.list("resourceTemplates", |c| c.templates.clone())
            .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(route) = self.state.catalog().await.route_resource(&request.uri) else {
            return Err(ErrorData::new(
                ErrorCode(-32002),
                format!("resource not found: {}", request.uri),
                None,
            ));
        };
        let result = self
            .forward(
                &route.backend,
                "resources/read",
                json!({"uri": route.original}),
            )
            .await?;
        Ok(ReadResourceResponse::Complete(convert(result)?))
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_request("resources/subscribe", &request.uri)
            .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_request("resources/unsubscribe", &request.uri)
            .await
    }

    #[allow(deprecated)] // logging: see the note on the imports
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let level = serde_json::to_value(request.level).unwrap_or(Value::Null);
        self.state.set_level_everywhere(level).await;
        Ok(())
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.list("prompts", |c| c.prompts.clone()).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let route = self
            .state
            .catalog()
            .await
            .prompt_routes
            .get(&request.name)
            .cloned();
        let Some(route) = route else {
            return Err(ErrorData::new(
                ErrorCode(-32602),
                format!("unknown prompt: {}", request.name),
                None,
            ));
        };
        let params =
            json!({"name": route.original, "arguments": request.arguments.unwrap_or_default()});
        let result = self.forward(&route.backend, "prompts/get", params).await?;
        Ok(GetPromptResponse::Complete(convert(result)?))
    }
}
