//! Routing: what a client's request becomes, the same in both protocol eras. Lists come
//! from the catalog (after a fan-out to upstreams not yet listed); a call goes to the
//! upstream that owns the tool, resource or prompt, through its breaker, on the caller's
//! own backend session; what the backend sends meanwhile goes to the hooks the edge gave.
//!
//! The parts: [`catalog`] (the pure build: filters, overrides, conflict resolution),
//! `current` (the published catalog as one value, and its rebuild), `fan_out` (list
//! requests across upstreams), `upstreams` (the set routed to now), and [`Router`] here
//! (the dispatch and the catalog's upkeep).

pub mod catalog;
mod current;
mod fan_out;
mod profiles;
mod upstreams;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hale_core::HealthState;
use hale_mcp::{CallHooks, McpError, NotificationSink, ServerRequestHandler, codes};
use serde_json::{Value, json};

use crate::config::{ConflictResolution, PartialFailureMode, ToolPolicy, VmcpConfig};
use crate::message::{self, RpcError};
use crate::upstream::{CallError, Mode, Owner, Profile, Signals, Upstream};
use catalog::{Catalog, Kind, Route};
pub use current::ListsChanged;
use current::{Published, Rules};
use tokio_util::sync::CancellationToken;
pub use upstreams::Upstreams;

/// What routing needs from the configuration.
#[derive(Clone, Debug)]
pub struct RouteSettings {
    /// How name collisions are resolved.
    pub conflict_resolution: ConflictResolution,
    /// Per-backend filters and overrides.
    pub tools: std::collections::BTreeMap<String, ToolPolicy>,
    /// `fail` or `best_effort`.
    pub partial_failure_mode: PartialFailureMode,
    /// Time between health checks: how long a list may be cached at most.
    pub check_interval: Duration,
    /// The deadline of a request to a backend not named in `operational.timeouts`.
    pub default_timeout: Duration,
    /// Below this share of routable backends, nothing is withdrawn (panic mode).
    pub panic_threshold: f64,
    /// How long an unroutable backend's tools stay advertised before they go.
    pub withdrawal_grace: Duration,
}

impl RouteSettings {
    /// The routing settings of `config`.
    pub fn of(config: &VmcpConfig) -> Self {
        RouteSettings {
            conflict_resolution: config.conflict_resolution.clone(),
            tools: config.tools.clone(),
            partial_failure_mode: config.partial_failure_mode,
            check_interval: config.health.check_interval,
            default_timeout: config.default_timeout,
            panic_threshold: config.panic_threshold,
            withdrawal_grace: config.withdrawal_grace,
        }
    }
}

/// The upstreams and the catalog over them.
#[derive(Debug)]
pub struct Router {
    settings: RwLock<Arc<RouteSettings>>,
    upstreams: RwLock<Arc<Upstreams>>,
    current: current::Current,
    signals: Arc<Signals>,
    /// When the catalog is already due to look again for a grace period's end (one
    /// waiting task per deadline, however many rebuilds see it).
    grace_wake: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// The catalogs of clients whose capabilities backends list something else to.
    profiles: profiles::Catalogs,
}

/// Who is asking, and where what comes before the answer goes.
pub(crate) struct Caller {
    /// The legacy client session (owner of backend sessions); `None` for a modern
    /// client, which has no session.
    pub(crate) session: Option<Arc<dyn Owner>>,
    /// Messages for the client before the answer (the call's own stream).
    pub(crate) interim: tokio::sync::mpsc::UnboundedSender<Bytes>,
    /// Which log lines reach the caller: `None` all (a legacy client: its
    /// `logging/setLevel` already told its own backend sessions), `Some(None)` none, and
    /// `Some(Some(level))` those at or above `level` (a 2026-07-28 client opts in per
    /// request with `_meta["io.modelcontextprotocol/logLevel"]`).
    pub(crate) log_level: Option<Option<u8>>,
    /// What answers the backend's requests to the client during the call (sampling,
    /// elicitation, roots): the edge relays them to a legacy client, turns them into
    /// `input_required` rounds for a 2026-07-28 one, or declines them.
    pub(crate) requests: ServerRequestHandler,
    /// What the client declared it can do: backends may offer it more or less than the
    /// shared catalog (`None`: the shared catalog).
    pub(crate) profile: Option<Profile>,
    /// Set when the answer depends on what the caller declared (a catalog of its
    /// profile's own): no cache may share it with other callers.
    pub(crate) personal: std::sync::atomic::AtomicBool,
}

/// MCP's log levels, in RFC 5424 order.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A log level's rank (RFC 5424 order, as MCP uses it); unknown levels rank highest.
pub(crate) fn log_rank(level: &str) -> u8 {
    LEVELS
        .iter()
        .position(|l| *l == level)
        .unwrap_or(LEVELS.len()) as u8
}

/// The level of `rank`, if it is one.
pub(crate) fn log_level_name(rank: u8) -> Option<&'static str> {
    LEVELS.get(usize::from(rank)).copied()
}

impl Router {
    /// A router over `upstreams`, which signal through `signals`.
    pub fn new(settings: RouteSettings, upstreams: Upstreams, signals: Arc<Signals>) -> Self {
        Router {
            settings: RwLock::new(Arc::new(settings)),
            upstreams: RwLock::new(Arc::new(upstreams)),
            current: current::Current::default(),
            signals,
            grace_wake: std::sync::Mutex::new(None),
            profiles: profiles::Catalogs::default(),
        }
    }

    /// The upstreams now.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the upstreams signal through.
    pub fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    /// The routing settings now.
    fn settings(&self) -> Arc<RouteSettings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Routes with `settings` over `upstreams` from now on (a configuration reload);
    /// requests under way keep what they took. The catalog is rebuilt at once, and the
    /// catalog task told, so clients hear what changed.
    pub(crate) fn replace(&self, settings: RouteSettings, upstreams: Upstreams) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
        *self
            .upstreams
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(upstreams);
        self.current.reloaded();
        self.rebuild_on_request();
    }

    /// The catalog as clients see it now, with its owners.
    fn published(&self) -> Arc<Published> {
        self.current.published()
    }

    /// The catalog as clients see it now.
    pub fn catalog(&self) -> Catalog {
        self.published().catalog.clone()
    }

    /// Whether lists arrived that the catalog was not built from (a rebuild is due).
    fn catalog_behind(&self) -> bool {
        self.current.behind(self.signals.lists_generation())
    }

    /// Rebuilds the catalog from the routable upstreams' lists; says which lists clients
    /// see changed (and keeps the change for the next notification).
    pub fn rebuild(&self) -> ListsChanged {
        // Read before the lists: a rebuild never claims lists newer than it saw.
        let generation = self.signals.lists_generation();
        let settings = self.settings();
        let rules = Rules {
            strategy: &settings.conflict_resolution,
            policies: &settings.tools,
            panic_threshold: settings.panic_threshold,
            grace: settings.withdrawal_grace,
        };
        let rebuilt = self.current.rebuild(&self.upstreams(), generation, &rules);
        if let Some(at) = rebuilt.wake_at {
            // A grace period ends then: the catalog looks again (once per deadline).
            let mut due = self
                .grace_wake
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            if due.is_some_and(|d| d > now && d <= at) {
                return rebuilt.changed;
            }
            *due = Some(at);
            drop(due);
            let signals = self.signals.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                signals.changed.notify_one();
            });
        }
        rebuilt.changed
    }

    /// True while fewer backends than `panicThreshold` are routable: nothing is
    /// withdrawn, and calls go to backends whose health checks fail (the breaker still
    /// refuses when real calls fail).
    pub fn in_panic(&self) -> bool {
        self.published().panic
    }

    /// A rebuild on a request's path: the catalog task sends the notification it calls for.
    fn rebuild_on_request(&self) {
        if self.rebuild().any() {
            self.signals.changed.notify_one();
        }
    }

    /// Keeps the catalog in step with the upstreams until `cancel`: on every change,
    /// fetch lists of upstreams that became reachable, rebuild, and hand `tell` what
    /// clients must hear, once per burst of changes.
    pub async fn maintain_catalog(
        self: Arc<Self>,
        cancel: CancellationToken,
        tell: impl Fn(ListsChanged) + Send,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.signals.changed.notified() => {}
            }
            // Coalesce a burst of changes into one rebuild and one notification.
            tokio::time::sleep(Duration::from_millis(50)).await;
            for u in self.upstreams().iter() {
                if u.health.reachable()
                    && u.lists().is_none()
                    && let Err(e) = u.refresh_lists().await
                {
                    tracing::warn!(backend = %u.name(), error = %e, "cannot list the backend's capabilities");
                }
            }
            self.rebuild();
            let unsent = self.current.take_unsent();
            if unsent.any() {
                tell(unsent);
            }
        }
    }

    /// The catalog `caller` is shown: the shared one, unless backends list something
    /// else to clients with its capabilities. Built once per capability profile and
    /// shared catalog (its lists generation and included backends), and cached.
    async fn catalog_for(&self, caller: &Caller) -> profiles::View {
        let published = self.published();
        let Some(profile) = caller.profile.as_ref().filter(|p| !p.is_shared()) else {
            return profiles::View::Shared(published);
        };
        if let Some(view) = self.profiles.get(profile, &published) {
            return view;
        }
        let upstreams = self.upstreams();
        let included: Vec<Arc<Upstream>> = published
            .included()
            .iter()
            .filter_map(|n| upstreams.get(n).cloned())
            .collect();
        let listed =
            futures_util::future::join_all(included.iter().map(|u| u.lists_for(profile))).await;
        let mut lists = Vec::new();
        let mut same = true;
        for (u, mine) in included.iter().zip(listed) {
            if let Some(mine) = mine {
                same &= u.lists().is_some_and(|shared| Arc::ptr_eq(&shared, &mine));
                lists.push(mine);
            }
        }
        let view = if same {
            profiles::View::Shared(published.clone())
        } else {
            let settings = self.settings();
            match catalog::build(&settings.conflict_resolution, &settings.tools, &lists) {
                Ok(own) => profiles::View::Own(Arc::new(own)),
                Err(_) => profiles::View::Shared(published.clone()),
            }
        };
        self.profiles.keep(profile, &published, view.clone());
        view
    }

    /// How long a modern client may cache a list (`ttlMs`): 0 while any routable
    /// upstream is degraded, half-open or failing checks (a withdrawal may be near);
    /// otherwise the time to the soonest next check, so no client caches a list past a
    /// withdrawal it could have seen.
    pub(crate) fn ttl_ms(&self) -> u64 {
        let interval = self.settings().check_interval;
        let now = tokio::time::Instant::now().into_std();
        let mut ttl = interval;
        for u in self.upstreams().iter() {
            let (stable, last_check) = u.health.cache_hint();
            // A withdrawn upstream may come back at its next check: that bounds the TTL
            // too; only a routable one that wavers makes lists uncacheable.
            if u.routable() && !stable {
                return 0;
            }
            if let Some(at) = last_check {
                ttl = ttl.min(interval.saturating_sub(now.saturating_duration_since(at)));
            }
        }
        ttl.as_millis() as u64
    }

    /// If a 2026-07-28 client's `method` call may need `input_required` rounds (it goes
    /// to a handshake-era backend, which may ask the client for input mid-call, or its
    /// target is not known yet), the call's deadline; `None` when it goes straight to a
    /// backend that speaks 2026-07-28.
    pub(crate) async fn may_ask(&self, method: &str, params: &Value) -> Option<Duration> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let published = self.published();
        let route = match method {
            "tools/call" => published.catalog.tool_routes.get(name),
            "prompts/get" => published.catalog.prompt_routes.get(name),
            _ => return None,
        };
        let upstream = route.and_then(|r| self.upstreams().get(&r.backend).cloned());
        match upstream {
            Some(u) if !u.speaks_handshake().await => None,
            Some(u) => Some(u.request_timeout()),
            None => Some(self.settings().default_timeout),
        }
    }

    /// Opens the shared clients' subscriptions to `uris` (for modern listeners; best
    /// effort).
    pub(crate) async fn subscribe_shared(&self, uris: &[String]) {
        for uri in uris {
            let Some(route) = self.published().catalog.route_resource(uri) else {
                continue;
            };
            if let Some(u) = self.upstreams().get(&route.backend) {
                let _ = u.subscribe_shared(&route.original).await;
            }
        }
    }

    /// Client session `id`'s backend session ids, by backend.
    pub(crate) async fn backend_sessions_of(
        &self,
        id: &str,
    ) -> std::collections::BTreeMap<String, crate::upstream::BackendSession> {
        let mut ids = std::collections::BTreeMap::new();
        for u in self.upstreams().iter() {
            if let Some(client) = u.session_of(id)
                && let Some(sid) = client.session_id().await
            {
                let protocol_version = client.server_info().await.protocol_version.clone();
                ids.insert(
                    u.name().to_string(),
                    crate::upstream::BackendSession {
                        id: sid,
                        protocol_version,
                    },
                );
            }
        }
        ids
    }

    /// Ends client session `id`'s backend sessions, counting each as `event`.
    pub(crate) async fn close_sessions_of(&self, id: &str, event: &'static str) {
        let upstreams = self.upstreams();
        futures_util::future::join_all(upstreams.iter().map(|u| u.close_session(id, event))).await;
    }

    /// Ends client session `id`'s backend sessions as the store recorded them (the client
    /// ended a session other replicas opened some of).
    pub(crate) async fn end_recorded_sessions(
        &self,
        id: &str,
        recorded: &std::collections::BTreeMap<String, crate::upstream::BackendSession>,
    ) {
        let upstreams = self.upstreams();
        let ending = upstreams.iter().map(|u| async move {
            match recorded.get(u.name()) {
                Some(session) => u.end_session(id, session).await,
                None => u.close_session(id, "closed").await,
            }
        });
        futures_util::future::join_all(ending).await;
    }

    /// Lets go of client session `id`'s backend sessions without ending them.
    pub(crate) fn forget_sessions_of(&self, id: &str) {
        for u in self.upstreams().iter() {
            u.forget_session(id);
        }
    }

    /// Lets go of every backend session without ending them (shutdown with a shared
    /// store: the sessions go on at other replicas).
    pub(crate) fn forget_all_sessions(&self) {
        for u in self.upstreams().iter() {
            u.forget_all_sessions();
        }
    }

    /// Ends every backend session (shutdown).
    pub(crate) async fn close_all_sessions(&self) {
        let upstreams = self.upstreams();
        futures_util::future::join_all(upstreams.iter().map(|u| u.close_all_sessions("closed")))
            .await;
    }

    /// Answers `method` for `caller`.
    pub(crate) async fn handle(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        match method {
            "ping" => Ok(json!({})),
            "tools/list" => self.list(caller, "tools", Kind::Tools).await,
            "resources/list" => self.list(caller, "resources", Kind::Resources).await,
            "resources/templates/list" => {
                self.list(caller, "resourceTemplates", Kind::Templates)
                    .await
            }
            "prompts/list" => self.list(caller, "prompts", Kind::Prompts).await,
            "tools/call" => self.call_tool(caller, params).await,
            "resources/read" => {
                let uri = str_param(&params, "uri")?;
                let route = self.resource_route(&uri)?;
                let forwarded = with_name(params, "uri", &route.original);
                self.forward(caller, &route.backend, "resources/read", forwarded)
                    .await
            }
            "prompts/get" => {
                let name = str_param(&params, "name")?;
                let route = self
                    .catalog_for(caller)
                    .await
                    .catalog()
                    .prompt_routes
                    .get(&name)
                    .cloned()
                    .or_else(|| self.published().catalog.prompt_routes.get(&name).cloned());
                let Some(route) = route else {
                    return Err(RpcError::new(
                        codes::UNKNOWN_NAME,
                        format!("unknown prompt: {name}"),
                    ));
                };
                let forwarded = with_name(params, "name", &route.original);
                self.forward(caller, &route.backend, "prompts/get", forwarded)
                    .await
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                self.subscribe(caller, method, params).await
            }
            "logging/setLevel" => self.set_level(caller, params).await,
            "completion/complete" => {
                let reference = &params["ref"];
                let published = self.published();
                let target = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => {
                        let name = reference
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        published
                            .catalog
                            .prompt_routes
                            .get(name)
                            .map(|r| (r.backend.clone(), "name", r.original.clone()))
                    }
                    Some("ref/resource") => {
                        let uri = reference
                            .get("uri")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        published
                            .catalog
                            .route_resource(uri)
                            .map(|r| (r.backend, "uri", r.original))
                    }
                    _ => None,
                };
                let Some((backend, key, original)) = target else {
                    return Err(RpcError::new(-32602, "completion/complete: unknown ref"));
                };
                let mut forwarded = params;
                forwarded["ref"][key] = Value::String(original);
                self.forward(caller, &backend, "completion/complete", forwarded)
                    .await
            }
            other => Err(RpcError::new(-32601, format!("method not found: {other}"))),
        }
    }

    fn resource_route(&self, uri: &str) -> Result<Route, RpcError> {
        self.published().catalog.route_resource(uri).ok_or_else(|| {
            RpcError::new(-32602, format!("resource not found: {uri}"))
                .with_data(json!({"uri": uri}))
        })
    }

    /// A list, after every routable upstream listed again; `fail` / `best_effort` decide
    /// what a failure among them does to the answer (under `best_effort` it holds only
    /// what the upstreams that answered gave, not a failed one's earlier lists).
    async fn list(&self, caller: &Caller, field: &str, kind: Kind) -> Result<Value, RpcError> {
        let mode = self.settings().partial_failure_mode;
        let failures = fan_out::fan_out(&self.upstreams(), mode).await;
        if !failures.is_empty() && mode == PartialFailureMode::Fail {
            let detail: Vec<String> = failures.iter().map(|(b, e)| format!("{b}: {e}")).collect();
            return Err(RpcError::new(
                codes::PARTIAL_FAILURE,
                format!("backends failed: {}", detail.join("; ")),
            )
            .with_data(json!({"failures": failures.iter().map(|(b, e)| json!({"backend": b, "error": e})).collect::<Vec<_>>()})));
        }
        self.rebuild_on_request();
        let view = self.catalog_for(caller).await;
        if matches!(view, profiles::View::Own(_)) {
            caller
                .personal
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let failed: Vec<&str> = failures.iter().map(|(b, _)| b.as_str()).collect();
        let mut result = json!({ field: view.catalog().items(kind, &failed) });
        if !failures.is_empty() {
            result["_meta"] = json!({"hale/partialFailures": failures.iter().map(|(b, e)| json!({"backend": b, "error": e})).collect::<Vec<_>>()});
        }
        Ok(result)
    }

    async fn call_tool(&self, caller: &Caller, params: Value) -> Result<Value, RpcError> {
        let name = str_param(&params, "name")?;
        // What this caller was offered first (a tool listed only to clients with its
        // capabilities), then the shared catalog.
        if let Some(route) = self.catalog_for(caller).await.own_tool_route(&name) {
            return self
                .call_listed(caller, &name, &route.backend, &route.original, params)
                .await;
        }
        let lookup = |router: &Router| router.published().catalog.tool_routes.get(&name).cloned();
        let mut route = lookup(self);
        if route.is_none() {
            // Not advertised now. If its backend is routable, the catalog has not caught
            // up yet (it is rebuilt 50 ms after a change); if nobody offers it, a backend
            // may not have been listed yet. Either way, catch up once, asking only the
            // upstreams never listed: a client hammering a withdrawn or unknown tool must
            // not turn into list requests to every healthy backend.
            let owner = self.published().owner_of_tool(&name).cloned();
            let upstream = owner
                .as_ref()
                .and_then(|r| self.upstreams().get(&r.backend).cloned());
            // Withdrawn by its own circuit: the call goes on to be refused by it (or be
            // the trial), with the tool's error, not the backend's.
            if let (Some(r), Some(u)) = (&owner, &upstream)
                && u.routable()
                && u.health.tool_circuits.is_withdrawn(&r.original)
            {
                return self
                    .call_listed(caller, &name, &r.backend, &r.original, params)
                    .await;
            }
            let stale = upstream.is_some_and(|u| u.routable());
            // `catalog_behind`: lists arrived (the catalog task's) that the catalog was
            // not rebuilt from yet; rebuilding is local work, no backend is asked.
            if stale
                || self.catalog_behind()
                || (owner.is_none() && fan_out::refresh_unlisted(&self.upstreams()).await)
            {
                self.rebuild_on_request();
                route = lookup(self);
            }
        }
        let Some(route) = route else {
            // A withdrawn backend's tool: say whose it is and why, so the client knows it
            // will come back.
            let owner = self.published().owner_of_tool(&name).cloned();
            if let Some((route, u)) =
                owner.and_then(|r| self.upstreams().get(&r.backend).cloned().map(|u| (r, u)))
            {
                // A draining backend's tools are withdrawn, but a client with a backend
                // session there may finish its work.
                if u.mode() == Mode::Draining && self.has_session(caller, &u) {
                    return self
                        .call_listed(caller, &name, &route.backend, &route.original, params)
                        .await;
                }
                return Err(unavailable(&u, true, &why_unroutable(&u)));
            }
            return Err(RpcError::new(
                codes::UNKNOWN_NAME,
                format!("unknown tool: {name}"),
            ));
        };
        self.call_listed(caller, &name, &route.backend, &route.original, params)
            .await
    }

    /// `tools/call` of the tool the caller knows as `listed`, which `backend` names
    /// `original`: a refusal by the tool's own circuit names it as the caller knows it.
    async fn call_listed(
        &self,
        caller: &Caller,
        listed: &str,
        backend: &str,
        original: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let forwarded = with_name(params, "name", original);
        self.forward_as(caller, backend, "tools/call", forwarded, Some(listed))
            .await
    }

    /// `resources/subscribe` and `resources/unsubscribe`: on the caller's own backend
    /// session where it has one; else through the shared client, whose updates are passed
    /// on to the sessions that subscribed.
    async fn subscribe(
        &self,
        caller: &Caller,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let uri = str_param(&params, "uri")?;
        let route = self.resource_route(&uri)?;
        let subscribe = method == "resources/subscribe";
        if let (Some(session), Some(u)) = (
            &caller.session,
            self.upstreams().get(&route.backend).cloned(),
        ) && let Ok(client) = u.client_for(Some(session), None).await
        {
            let (modern, own_session) = client.era().await;
            if modern || !own_session {
                // No backend session of the caller's own (a 2026-07-28 backend has no
                // resources/subscribe: its listen stream carries the URIs): the shared
                // client asks for updates, and they are passed on to the sessions that
                // subscribed.
                session.watch_shared(&uri, subscribe);
                if subscribe {
                    client
                        .subscribe_resource(&route.original)
                        .await
                        .map_err(|e| unavailable(&u, false, &e.to_string()))?;
                }
                return Ok(json!({}));
            }
            if subscribe {
                // Updates arrive on the backend session's GET stream, opened now.
                client.listen().await;
            }
        }
        let forwarded = with_name(params, "uri", &route.original);
        self.forward(caller, &route.backend, method, forwarded)
            .await
            .map(|_| json!({}))
    }

    /// `logging/setLevel`: the caller's own backend sessions only, now and as they open.
    async fn set_level(&self, caller: &Caller, params: Value) -> Result<Value, RpcError> {
        let Some(session) = &caller.session else {
            return Err(RpcError::new(
                -32601,
                "logging/setLevel needs a session (2026-07-28 sets the level per request in _meta)",
            ));
        };
        let level = params.get("level").cloned().unwrap_or(Value::Null);
        session.set_log_level(level.clone());
        let upstreams = self.upstreams();
        let open: Vec<Arc<hale_mcp::McpClient>> = upstreams
            .iter()
            .filter_map(|u| u.session_of(session.id()))
            .collect();
        futures_util::future::join_all(open.into_iter().map(|client| {
            let level = level.clone();
            async move {
                if client.server_info().await.has("logging") {
                    let _ = client
                        .request("logging/setLevel", Some(json!({"level": level})))
                        .await;
                }
            }
        }))
        .await;
        // Stateless backends share one session: their level is everyone's, so it is left
        // as it is rather than set by one client for all.
        Ok(json!({}))
    }

    /// True if `caller` has a backend session of its own on `u`.
    fn has_session(&self, caller: &Caller, u: &Upstream) -> bool {
        caller
            .session
            .as_ref()
            .is_some_and(|s| u.session_of(s.id()).is_some())
    }

    /// Sends a request to `backend` for `caller`, through its breaker, ending at once if
    /// the backend is withdrawn meanwhile.
    async fn forward(
        &self,
        caller: &Caller,
        backend: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        self.forward_as(caller, backend, method, params, None).await
    }

    /// [`forward`](Self::forward) of a `tools/call` of the tool the caller knows as
    /// `listed` (`None`: any other request).
    async fn forward_as(
        &self,
        caller: &Caller,
        backend: &str,
        method: &str,
        params: Value,
        listed: Option<&str>,
    ) -> Result<Value, RpcError> {
        let Some(u) = self.upstreams().get(backend).cloned() else {
            return Err(RpcError::new(-32602, format!("unknown backend {backend}")));
        };
        if caller.session.is_none()
            && let Some(Some(rank)) = caller.log_level
            && let Some(name) = log_level_name(rank)
        {
            u.lower_shared_log_level(rank, name).await;
        }
        match u.mode() {
            Mode::Active => {}
            Mode::Draining if self.has_session(caller, &u) => {}
            _ => return Err(unavailable(&u, true, &why_unroutable(&u))),
        }
        // Health from the cache; the breaker itself refuses (lock-free while closed). In
        // panic mode failing checks are not trusted: the call is tried.
        let health = u.health.health();
        if health == HealthState::Unauthenticated
            || (health == HealthState::Unhealthy && !self.published().panic)
        {
            let circuit = u.health.breaker.snapshot().state;
            return Err(unavailable(
                &u,
                true,
                &format!("health {health}, circuit {circuit}"),
            ));
        }
        let withdrawn = u.health.withdrawn.notified();
        tokio::pin!(withdrawn);
        withdrawn.as_mut().enable();
        if u.is_retired() {
            return Err(retired(&u));
        }
        let hooks = hooks(caller, backend);
        let call = u.call(
            caller.session.as_ref(),
            caller.profile.as_ref(),
            method,
            params,
            Some(&hooks),
        );
        let result = tokio::select! {
            result = call => result,
            () = withdrawn => {
                if u.is_retired() {
                    return Err(retired(&u));
                }
                return Err(unavailable(&u, false, &format!(
                    "withdrawn while the call was in flight (health {}, circuit {})",
                    u.health.health(),
                    u.health.breaker.snapshot().state
                )));
            }
        };
        match result {
            Ok(mut v) => {
                without_envelope(&mut v);
                Ok(v)
            }
            // The backend answered with an error of its own: the client gets it as it is.
            Err(CallError::Backend(McpError::Rpc {
                code,
                message,
                data,
                ..
            })) => Err(RpcError {
                code,
                message,
                data,
            }),
            Err(CallError::ToolRefused {
                tool,
                retry_after,
                reason,
            }) => Err(tool_unavailable(
                &u,
                listed.unwrap_or(&tool),
                retry_after,
                reason.as_deref(),
            )),
            Err(CallError::RateLimited(left)) => Err(slow_down(&u, left)),
            Err(CallError::Backend(McpError::RateLimited { retry_after, .. })) => {
                Err(slow_down(&u, retry_after.unwrap_or(Duration::from_secs(1))))
            }
            Err(e) => Err(unavailable(&u, false, &e.to_string())),
        }
    }
}

/// The 2026-07-28 envelope keys a backend put in its result's `_meta` (its own
/// `serverInfo`): they belong to the backend's hop, and the server the client talks to
/// is the vMCP.
fn without_envelope(result: &mut Value) {
    let Some(Value::Object(meta)) = result.get_mut("_meta") else {
        return;
    };
    meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/") || k.ends_with("related-task"));
    if meta.is_empty()
        && let Some(r) = result.as_object_mut()
    {
        r.remove("_meta");
    }
}

/// Why `u` takes no calls now, for its error.
fn why_unroutable(u: &Upstream) -> String {
    match u.mode() {
        Mode::Active => format!(
            "health {}, circuit {}",
            u.health.health(),
            u.health.breaker.snapshot().state
        ),
        Mode::Draining => "it is draining (set by an operator): no new work".into(),
        Mode::Maintenance => "it is in maintenance (set by an operator)".into(),
    }
}

/// Where what the backend sends during the call goes: to this caller's stream only.
fn hooks(caller: &Caller, backend: &str) -> CallHooks {
    let to_client = caller.interim.clone();
    let name = backend.to_string();
    let log_level = caller.log_level;
    let notifications: NotificationSink = Arc::new(move |note: hale_mcp::Notification| {
        let mut params = note.params.unwrap_or_else(|| json!({}));
        if note.method == "notifications/message"
            && let Some(wanted) = log_level
        {
            let level = params
                .get("level")
                .and_then(Value::as_str)
                .unwrap_or("info");
            if wanted.is_none_or(|min| log_rank(level) < min) {
                return; // not asked for: 2026-07-28 sends log lines on opt-in only
            }
        }
        if note.method == "notifications/message" && params.get("logger").is_none() {
            // Say which backend spoke, unless it named its logger itself.
            params["logger"] = Value::String(name.clone());
        }
        let _ = to_client.send(message::notification(&note.method, &params));
    });
    CallHooks {
        requests: Some(caller.requests.clone()),
        notifications: Some(notifications),
    }
}

fn str_param(params: &Value, key: &str) -> Result<String, RpcError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RpcError::new(-32602, format!("params.{key} is required")))
}

/// `params` with `key` replaced by the backend's own name for the thing. The rest passes
/// as it is: `inputResponses` and `requestState` of an `input_required` retry, and the
/// caller's `_meta` (a 2026-07-28 caller's capabilities reach a 2026-07-28 backend, which
/// must not ask for what the caller cannot give).
fn with_name(mut params: Value, key: &str, original: &str) -> Value {
    params[key] = Value::String(original.to_string());
    params
}

/// The error for a call to an upstream a reload removed or replaced while the call was on
/// its way (the client may call again: a replaced backend's tools route to the new one).
fn retired(u: &Upstream) -> RpcError {
    RpcError::new(
        codes::BACKEND_UNAVAILABLE,
        format!(
            "backend '{}' is unavailable: it was removed or changed by a configuration reload",
            u.name()
        ),
    )
    .with_data(json!({"backend": u.name(), "reason": "reloaded"}))
}

/// A wait in whole seconds, rounded up (a client that waits this long is not early).
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// "retry in 42 s", "retry in 5 min": a wait as a person reads it (the exact value is in
/// the error's `data.retryAfterSeconds`).
pub(crate) fn retry_in_words(d: Duration) -> String {
    let secs = whole_seconds(d);
    match secs {
        0 => "retry now".to_string(),
        1..120 => format!("retry in {secs} s"),
        _ => format!("retry in {} min", secs.div_ceil(60)),
    }
}

/// The error for a call to a tool whose own circuit is open (its backend serves its other
/// tools): said like an unavailable backend, never "unknown tool", so the client knows
/// it comes back and when.
fn tool_unavailable(
    u: &Upstream,
    tool: &str,
    retry_after: Option<Duration>,
    reason: Option<&str>,
) -> RpcError {
    let retry = retry_after.map(whole_seconds);
    let why = reason.map_or(String::new(), |r| format!(" ({r})"));
    let when = retry_after.map_or(String::new(), |w| format!("; {}", retry_in_words(w)));
    crate::upstream::traced::event("tool circuit refused the call", || {
        vec![
            opentelemetry::KeyValue::new("mcp.backend.name", u.name().to_string()),
            opentelemetry::KeyValue::new("gen_ai.tool.name", tool.to_string()),
        ]
    });
    RpcError::new(
        codes::BACKEND_UNAVAILABLE,
        format!(
            "tool '{tool}' is unavailable: its circuit is open{why}; backend '{}' serves its other tools{when}",
            u.name()
        ),
    )
    .with_data(json!({
        "backend": u.name(),
        "tool": tool,
        "reason": "tool_circuit_open",
        "retryAfterSeconds": retry,
    }))
}

/// The error for a call to a backend that asked hale to slow down (HTTP 429): its wait
/// is passed on, so the client can honour it too.
fn slow_down(u: &Upstream, left: Duration) -> RpcError {
    let secs = whole_seconds(left).max(1);
    RpcError::new(
        codes::BACKEND_UNAVAILABLE,
        format!(
            "backend '{}' is unavailable: it asked for fewer requests (HTTP 429); {}",
            u.name(),
            retry_in_words(Duration::from_secs(secs))
        ),
    )
    .with_data(json!({"backend": u.name(), "reason": "rate_limited", "retryAfterSeconds": secs}))
}

/// The error for a call to a known upstream that cannot take it now. `refused`: the call
/// was not sent (counted as a rejection when the circuit is open).
fn unavailable(u: &Upstream, refused: bool, why: &str) -> RpcError {
    let snap = u.health.breaker.snapshot();
    if refused && snap.state == hale_core::BreakerState::Open {
        metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => u.name().to_string()).increment(1);
    }
    let wait = u.retry_after();
    let retry = wait.map(whole_seconds);
    let when = wait.map_or(String::new(), |w| format!("; {}", retry_in_words(w)));
    // On the client request's span: the call never reached the backend, and why.
    crate::upstream::traced::event(
        if snap.state == hale_core::BreakerState::Open {
            "circuit refused the call"
        } else {
            "backend unavailable"
        },
        || {
            vec![
                opentelemetry::KeyValue::new("mcp.backend.name", u.name().to_string()),
                opentelemetry::KeyValue::new("hale.circuit.state", snap.state.as_str()),
                opentelemetry::KeyValue::new("hale.health.state", u.health.health().as_str()),
            ]
        },
    );
    RpcError::new(
        codes::BACKEND_UNAVAILABLE,
        format!("backend '{}' is unavailable: {why}{when}", u.name()),
    )
    .with_data(json!({
        "backend": u.name(),
        "health": u.health.health().as_str(),
        "circuit": snap.state.as_str(),
        "retryAfterSeconds": retry,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backends_own_identity_stays_on_its_hop() {
        let mut r =
            json!({"content": [], "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "b"}}});
        without_envelope(&mut r);
        assert_eq!(r, json!({"content": []}));
        let mut r =
            json!({"_meta": {"io.modelcontextprotocol/serverInfo": {}, "fastmcp": {"x": 1}}});
        without_envelope(&mut r);
        assert_eq!(r, json!({"_meta": {"fastmcp": {"x": 1}}}));
    }

    #[test]
    fn a_wait_reads_as_a_person_says_it_and_is_never_early() {
        assert_eq!(
            retry_in_words(Duration::from_millis(59_995)),
            "retry in 60 s"
        );
        assert_eq!(retry_in_words(Duration::from_millis(300)), "retry in 1 s");
        assert_eq!(retry_in_words(Duration::ZERO), "retry now");
        assert_eq!(retry_in_words(Duration::from_secs(299)), "retry in 5 min");
        assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
    }
}
