//! What every part of the vMCP shares: the backends, their request clients and lists,
//! the catalog of routable backends and its upkeep, and the fan-out of list requests.
//! Client sessions and their backend sessions live at the edge ([`crate::edge`]); calls
//! are routed in [`crate::route`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hale_core::CallOutcome;
use hale_mcp::{CallHooks, ClientOptions, McpClient, McpError, Pool};
use serde_json::{Value, json};
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::aggregate::{self, BackendLists, Catalog};
use crate::backend::Backend;
use crate::config::{PartialFailureMode, VmcpConfig};
use crate::edge::message;
use crate::edge::{ClientSession, Listeners, Sessions};
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
    pub(crate) fn any(self) -> bool {
        self.tools || self.resources || self.prompts
    }

    fn merge(&mut self, other: ListsChanged) {
        self.tools |= other.tools;
        self.resources |= other.resources;
        self.prompts |= other.prompts;
    }
}

/// A backend whose answers cannot be used: the server refused the listing or the
/// handshake with a JSON-RPC error, or its answer broke the protocol or hale's limits.
fn unusable(e: &McpError) -> bool {
    matches!(e, McpError::Protocol { .. } | McpError::Rpc { .. })
}

/// The message of an unusable backend's withdrawal.
struct Unusable(String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unusable: {}", self.0)
    }
}

/// Why a call to a backend failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The breaker refused it: the backend was not contacted.
    Refused(String),
    /// The backend (or the way to it) failed, or answered with a JSON-RPC error.
    Backend(McpError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(why) => f.write_str(why),
            CallError::Backend(e) => e.fmt(f),
        }
    }
}

/// Everything the server shares between sessions and tasks.
pub struct State {
    /// The configuration.
    pub config: VmcpConfig,
    /// The backends, in configuration order.
    pub backends: Vec<Arc<Backend>>,
    /// Each backend's keep-alive connections, one pool per thread (worker threads and
    /// the main runtime), shared by every session with it.
    pools: Vec<Pool>,
    /// Per slot, each backend's shared request client: lists, stateless backends,
    /// modern clients. Only the main slot's listens for the backend's notifications.
    clients: Vec<Vec<std::sync::RwLock<Option<Arc<McpClient>>>>>,
    /// Serialises connecting a shared client, per slot and backend.
    connecting: Vec<Vec<tokio::sync::Mutex<()>>>,
    /// Per slot and backend, the lowest log level (rank) set on the shared client's
    /// session with `logging/setLevel` for 2026-07-28 callers; `u8::MAX`: none yet.
    shared_log_levels: Vec<Vec<std::sync::atomic::AtomicU8>>,
    /// Backend sessions open now, per backend (one per client session using it).
    pub(crate) backend_sessions: Vec<std::sync::atomic::AtomicU32>,
    /// Each backend's request metrics, handles kept.
    request_metrics: Vec<crate::request_metrics::RequestMetrics>,
    /// Backends that refused the handshake: 2026-07-28 only, no client sessions.
    modern_only: Vec<std::sync::atomic::AtomicBool>,
    lists: Mutex<HashMap<String, Arc<BackendLists>>>,
    /// Bumped whenever `lists` changes; the catalog remembers the value it was built from.
    lists_generation: std::sync::atomic::AtomicU64,
    catalog_generation: std::sync::atomic::AtomicU64,
    catalog: RwLock<Arc<Catalog>>,
    /// Every tool's backend, routable or not (rebuilt with the catalog): how a call to a
    /// withdrawn tool learns whose it is without any work.
    owners: Mutex<HashMap<String, String>>,
    /// Legacy client sessions.
    pub(crate) sessions: Sessions,
    /// Modern clients' `subscriptions/listen` streams.
    pub(crate) listeners: Listeners,
    /// Legacy sessions subscribed to resources through a shared client.
    pub(crate) resource_watch: crate::resource_watch::ResourceWatch,
    /// 2026-07-28 clients' calls to handshake-era backends waiting for their next round.
    pub(crate) bridge: crate::bridge::Bridge,
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
        Self::with_workers(config, 0)
    }

    /// Like [`new`](Self::new), with a slot of its own for each of `workers` worker
    /// threads besides the main runtime's.
    pub(crate) fn with_workers(
        config: VmcpConfig,
        workers: usize,
    ) -> Result<Arc<Self>, hale_core::ConfigError> {
        let slots = workers + 1;
        let mut backends = Vec::new();
        for b in &config.backends {
            backends.push(Arc::new(Backend::new(
                b.clone(),
                &config.health,
                &config.breaker,
                config.breaker_enabled,
            )?));
        }
        let shared_log_levels = (0..slots)
            .map(|_| {
                backends
                    .iter()
                    .map(|_| std::sync::atomic::AtomicU8::new(u8::MAX))
                    .collect()
            })
            .collect();
        let clients = (0..slots)
            .map(|_| {
                backends
                    .iter()
                    .map(|_| std::sync::RwLock::new(None))
                    .collect()
            })
            .collect();
        let connecting = (0..slots)
            .map(|_| {
                backends
                    .iter()
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect()
            })
            .collect();
        Ok(Arc::new(State {
            pools: backends
                .iter()
                .map(|_| Pool::per_thread(slots, crate::worker::current))
                .collect(),
            connecting,
            backend_sessions: backends
                .iter()
                .map(|_| std::sync::atomic::AtomicU32::new(0))
                .collect(),
            request_metrics: backends.iter().map(|_| Default::default()).collect(),
            modern_only: backends.iter().map(|_| Default::default()).collect(),
            config,
            backends,
            shared_log_levels,
            clients,
            lists: Mutex::new(HashMap::new()),
            lists_generation: std::sync::atomic::AtomicU64::new(0),
            catalog_generation: std::sync::atomic::AtomicU64::new(0),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            owners: Mutex::new(HashMap::new()),
            sessions: Sessions::default(),
            listeners: Listeners::default(),
            resource_watch: Default::default(),
            bridge: Default::default(),
            unsent: Mutex::new(ListsChanged::default()),
            changed: Arc::new(Notify::new()),
            first_round: Arc::new(FirstRound::default()),
        }))
    }

    /// How long a modern client may cache a list (`ttlMs`): 0 while any routable
    /// backend is degraded, half-open or failing checks (a withdrawal may be near);
    /// otherwise the time to the soonest next check, so no client caches a list past a
    /// withdrawal it could have seen.
    pub(crate) fn ttl_ms(&self) -> u64 {
        let interval = self.config.health.check_interval;
        let now = tokio::time::Instant::now().into_std();
        let mut ttl = interval;
        for b in &self.backends {
            let (stable, last_check) = b.cache_hint();
            // A withdrawn backend may come back at its next check: that bounds the TTL
            // too; only a routable one that wavers makes lists uncacheable.
            if b.routable() && !stable {
                return 0;
            }
            if let Some(at) = last_check {
                ttl = ttl.min(interval.saturating_sub(now.saturating_duration_since(at)));
            }
        }
        ttl.as_millis() as u64
    }

    /// Subscribes the shared sessions to `uris` (for modern listeners; best effort).
    pub(crate) async fn subscribe_shared(self: &Arc<Self>, uris: &[String]) {
        for uri in uris {
            let Some(route) = self.catalog().await.route_resource(uri) else {
                continue;
            };
            let Some(i) = self.index(&route.backend) else {
                continue;
            };
            // `resources/subscribe` on a handshake-era backend; on a 2026-07-28 one the
            // URI joins the shared client's listen stream.
            if let Ok(client) = self.client(i).await {
                let _ = client.subscribe_resource(&route.original).await;
            }
        }
    }

    /// Client session `id`'s resumable state: what another replica would need to go on
    /// serving it (negotiated version, capabilities, client info, log level, backend
    /// session ids).
    pub async fn resumable(&self, id: &str) -> Option<crate::edge::Resumable> {
        let session = self.sessions.get(id)?;
        let names: Vec<String> = self
            .backends
            .iter()
            .map(|b| b.config.name.clone())
            .collect();
        Some(session.resumable(&names).await)
    }

    /// Backend `i`'s keep-alive connections (each thread uses its own).
    pub(crate) fn pool(&self, i: usize) -> Pool {
        self.pools[i].clone()
    }

    fn slot(&self) -> usize {
        crate::worker::slot(self.clients.len())
    }

    pub(crate) fn index(&self, backend: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.config.name == backend)
    }

    /// The request-path client of backend `i`, connected on first use. Its notifications
    /// (`*/list_changed`) refresh that backend's lists.
    async fn client(self: &Arc<Self>, i: usize) -> Result<Arc<McpClient>, McpError> {
        let slot = self.slot();
        let cell = &self.clients[slot][i];
        if let Some(client) = cell.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(client.clone());
        }
        let _connecting = self.connecting[slot][i].lock().await;
        if let Some(client) = cell.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(client.clone());
        }
        let main = slot + 1 == self.clients.len();
        let b = &self.backends[i];
        let options = ClientOptions {
            transport: b.config.transport,
            request_timeout: self.config.timeout_for(&b.config.name),
            client_name: "hale-vmcp".into(),
            // Sampling and elicitation requests are relayed to the calling client.
            relays_client_features: true,
            pool: Some(self.pools[i].clone()),
            // The main slot's session listens for list changes and updates; the
            // workers' would only say the same again.
            listen: main,
            max_list_items: Some(self.config.max_tools_per_backend as usize),
            // 2026-07-28 where the backend speaks it; the handshake where it does not.
            era: hale_mcp::Era::Auto,
            credentials: Some(b.config.credentials.clone()),
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
        // A new session has no level set yet.
        self.shared_log_levels[slot][i].store(u8::MAX, std::sync::atomic::Ordering::Release);
        *cell.write().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        Ok(client)
    }

    /// 2026-07-28 calls parked between `input_required` rounds (for tests and status).
    pub fn bridge_waiting(&self) -> usize {
        self.bridge.len()
    }

    /// Lets a handshake-era backend's shared session send log lines down to `rank`, for
    /// a 2026-07-28 caller that asked for them (`logging/setLevel`, once per lower level;
    /// other callers' lines are still filtered by the level each asks for).
    pub(crate) async fn lower_shared_log_level(self: &Arc<Self>, i: usize, rank: u8) {
        use std::sync::atomic::Ordering;
        let level = &self.shared_log_levels[self.slot()][i];
        let Some(name) = crate::route::log_level_name(rank) else {
            return;
        };
        if rank >= level.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = self.client(i).await else {
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

    /// True if backend `i` speaks the handshake era (it may send requests mid-call).
    pub(crate) async fn speaks_handshake(self: &Arc<Self>, i: usize) -> bool {
        match self.client(i).await {
            Ok(client) => !client.era().await.0,
            Err(_) => false,
        }
    }

    /// The client that carries `session`'s requests to backend `i`: the session's own
    /// backend session for a stateful backend (opened now on first use, with the
    /// client's capabilities and info), else the shared one (stateless backends, modern
    /// clients, hale's own requests).
    pub(crate) async fn client_for(
        self: &Arc<Self>,
        i: usize,
        session: Option<&Arc<ClientSession>>,
    ) -> Result<Arc<McpClient>, McpError> {
        let shared = self.client(i).await?;
        let Some(session) = session else {
            return Ok(shared);
        };
        let (modern, has_session) = shared.era().await;
        if !modern && !has_session {
            return Ok(shared); // a stateless backend: nothing to keep apart
        }
        if self.modern_only[i].load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(shared); // 2026-07-28 only: no sessions to keep apart
        }
        // A legacy client keeps its session semantics: where the backend takes the
        // handshake (a 2026-07-28 server may too, without saying so in discover), the
        // client gets a handshake-era session of its own, as it would directly.
        let cell = &session.backends[i];
        match cell
            .get_or_try_init(|| crate::upstream::open(self, i, session))
            .await
        {
            Ok(client) => Ok(client.clone()),
            Err(e) if modern && e.is_refused_handshake() => {
                // It refused the handshake: 2026-07-28 only, for every client.
                self.modern_only[i].store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(shared)
            }
            Err(e) => Err(e),
        }
    }

    /// Calls backend `i` through its breaker on `session`'s behalf; the outcome feeds the
    /// breaker. What the backend sends while it answers goes to `hooks`.
    pub(crate) async fn call(
        self: &Arc<Self>,
        i: usize,
        session: Option<&Arc<ClientSession>>,
        method: &str,
        params: Value,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, CallError> {
        self.guarded(i, method, false, session, async |client| match hooks {
            Some(hooks) => client.request_hooked(method, Some(params), hooks).await,
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
        session: Option<&Arc<ClientSession>>,
        op: impl AsyncFnOnce(Arc<McpClient>) -> Result<T, McpError>,
    ) -> Result<T, CallError> {
        let backend = &self.backends[i];
        let permit = match backend.breaker.try_acquire() {
            Ok(p) => p,
            Err(rejected) => {
                metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => backend.config.name.clone()).increment(1);
                return Err(CallError::Refused(format!(
                    "circuit {} (retry after {:?})",
                    rejected.state, rejected.retry_after
                )));
            }
        };
        let started = tokio::time::Instant::now();
        let result = match self.client_for(i, session).await {
            Ok(client) => {
                let replaced = client.sessions_replaced();
                let result = op(client.clone()).await;
                let lost = client.sessions_replaced().saturating_sub(replaced);
                if session.is_some()
                    && let Err(e) = &result
                    && e.is_refused_handshake()
                {
                    // The backend no longer takes the handshake (upgraded in place to
                    // 2026-07-28): its clients go through the shared session from now on.
                    self.modern_only[i].store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if lost > 0 && session.is_some() {
                    // The backend lost this client's session; hale-mcp opened a new
                    // one for this client alone.
                    metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => backend.config.name.clone(), "event" => "lost").increment(lost);
                }
                result
            }
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => e.call_outcome(),
        };
        self.request_metrics[i].record(
            &backend.config.name,
            method,
            started.elapsed().as_secs_f64(),
            outcome == CallOutcome::Success,
        );
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
            metrics::counter!("toolhive_vmcp_backend_errors_total", "backend" => backend.config.name.clone(), "method" => method.to_string(), "category" => category.as_str()).increment(1);
            // A transport failure may also have lost the shared session: start afresh
            // next time. (A client's own backend session re-initializes by itself when
            // the backend says it lost it.)
            if session.is_none() {
                *self.clients[self.slot()][i]
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = None;
            }
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
        result.map_err(CallError::Backend)
    }

    /// Fetches backend `i`'s lists (the capabilities it declared).
    async fn refresh(self: &Arc<Self>, i: usize) -> Result<(), String> {
        let name = self.backends[i].config.name.clone();
        // One admission for the whole refresh: its failure feeds the breaker like a call's.
        let lists = self
            .guarded(i, "tools/list", true, None, async |client| {
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
            .await;
        let lists = match lists {
            Ok(lists) => lists,
            Err(CallError::Backend(e)) if unusable(&e) => {
                // It answers, but its listing cannot be used: withdraw it (it never takes
                // the other backends' lists down), say why in /status, try again later.
                let why = e.to_string();
                tracing::warn!(backend = %name, reason = %why, "backend withdrawn: it answers but its capabilities cannot be used");
                if self.backends[i].set_unusable(Some(why.clone())) {
                    self.backends[i].withdrawn.notify_waiters();
                    self.changed.notify_one();
                }
                let (state, again) = (Arc::downgrade(self), self.config.health.check_interval);
                tokio::spawn(async move {
                    tokio::time::sleep(again).await;
                    if let Some(state) = state.upgrade() {
                        state.changed.notify_one();
                    }
                });
                return Err(Unusable(why).to_string());
            }
            Err(e) => return Err(e.to_string()),
        };
        if self.backends[i].set_unusable(None) {
            self.changed.notify_one();
        }
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, Arc::new(lists));
        self.lists_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Refreshes every routable backend's lists at once; returns the failures (under
    /// `fail`, only the first: the rest are cancelled).
    pub(crate) async fn fan_out(self: &Arc<Self>) -> Vec<(String, String)> {
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
            if let Err(e) = result
                && self.backends[i].unusable().is_none()
            {
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
        let (generation, lists, all, listed) = {
            let cached = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
            let generation = self
                .lists_generation
                .load(std::sync::atomic::Ordering::Acquire);
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
            (generation, routable, all, listed)
        };
        let catalog =
            match aggregate::build(&self.config.conflict_resolution, &self.config.tools, &lists) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    // These lists cannot make a catalog: no point in trying them again.
                    self.catalog_generation
                        .fetch_max(generation, std::sync::atomic::Ordering::AcqRel);
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
        // A rebuild from newer lists finished first: this one has nothing to add.
        if generation
            < self
                .catalog_generation
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return ListsChanged::default();
        }
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
        // Only now is the catalog built from these lists: a request that looked earlier
        // saw it behind and rebuilt (a tool just listed is never "unknown").
        self.catalog_generation
            .store(generation, std::sync::atomic::Ordering::Release);
        self.unsent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(changed);
        changed
    }

    /// Passes on a notification from a backend's shared session: resource updates to
    /// the modern listeners of that URI and to the legacy sessions that subscribed
    /// through it (those with a backend session of their own hear there). Log messages
    /// there belong to no client and stay here.
    async fn relay(&self, backend: &str, note: hale_mcp::Notification) {
        if note.method == "notifications/resources/updated" {
            let params = note.params.unwrap_or_default();
            let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                return;
            };
            self.listeners.resource_updated(uri, &params);
            self.resource_watch.updated(uri, &params);
        } else {
            tracing::debug!(backend, method = %note.method, "a notification on the shared session; no client owns it");
        }
    }

    /// A rebuild on a request's path: the catalog task sends the notification it calls for.
    pub(crate) async fn rebuild_on_request(&self) {
        if self.rebuild().await.any() {
            self.changed.notify_one();
        }
    }

    /// Sends the `list_changed` notifications `changed` calls for to every legacy
    /// session with a GET stream and every modern listener that asked for them.
    pub async fn notify_sessions(&self, changed: ListsChanged) {
        if !changed.any() {
            return;
        }
        let kinds = [
            (changed.tools, "notifications/tools/list_changed"),
            (changed.resources, "notifications/resources/list_changed"),
            (changed.prompts, "notifications/prompts/list_changed"),
        ];
        let messages: Vec<Bytes> = kinds
            .iter()
            .filter(|(yes, _)| *yes)
            .map(|(_, method)| message::notification(method, &json!({})))
            .collect();
        let mut told = 0u64;
        for session in self.sessions.all() {
            let mut sent = false;
            for m in &messages {
                sent |= session.send(m.clone());
            }
            told += u64::from(sent);
        }
        told += self.listeners.lists_changed(changed);
        metrics::counter!("toolhive_vmcp_list_changed_notifications_total").increment(told);
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
                if self.backends[i].reachable()
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
    pub(crate) fn owner_of_tool(&self, name: &str) -> Option<String> {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Lists the routable backends whose lists were never fetched (or were dropped as
    /// stale); true if there were any. Nothing is asked of backends already listed.
    pub(crate) async fn refresh_unlisted(self: &Arc<Self>) -> bool {
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

    /// Whether lists arrived that the catalog was not built from (a rebuild is due).
    pub(crate) fn catalog_behind(&self) -> bool {
        self.lists_generation
            .load(std::sync::atomic::Ordering::Acquire)
            != self
                .catalog_generation
                .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The catalog as clients see it now.
    pub async fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().await.clone()
    }
}
