//! The upstream side: one [`Upstream`] per backend, owning everything about that backend
//! so that it can be added, replaced or removed as one unit. It is put together here
//! from parts that know nothing of each other's owner:
//!
//! - [`health`]: the tracker and breaker, routability, the `/status` record;
//! - [`monitor`]: the health-check loop;
//! - `target`: where the backend is and how clients reach it (its keep-alive pool);
//! - `shared`: the shared request client of each thread;
//! - `sessions`: each client session's own backend session ([`Owner`]);
//! - `lists`: what the backend lists; `request_metrics`: request metrics, handles kept;
//! - `signals`: how upstreams tell the rest of the vMCP that something changed.
//!
//! Nothing here knows about the catalog or the client edge: what changes goes up through
//! [`Signals`], and a client session is only an [`Owner`] of backend sessions.

pub mod health;
mod lists;
pub mod monitor;
mod profiles;
mod request_metrics;
mod retry;
mod sessions;
mod shared;
mod signals;
mod stdio;
mod target;
pub(crate) mod tools;
pub(crate) mod traced;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hale_core::{BreakerConfig, CallOutcome, ConfigError, FailureCategory, HealthConfig};
use hale_mcp::{CallHooks, McpClient, McpError, Notification, Pool};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::{BackendConfig, VmcpConfig};

pub use health::{Changes, Health, TokioClock};
pub use lists::BackendLists;
use monitor::MonitorSettings;
pub(crate) use profiles::Profile;
pub use sessions::BackendSession;
pub(crate) use sessions::Owner;
pub use signals::Signals;

/// What one upstream needs from the configuration: its own entry and the settings that
/// apply to it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The backend's entry.
    pub backend: BackendConfig,
    /// Each request's deadline (`operational.timeouts`).
    pub request_timeout: Duration,
    /// Client sessions that may each have a backend session open at once.
    pub max_sessions: u32,
    /// Items per list hale takes from it.
    pub max_list_items: u32,
    /// Health checks: thresholds, interval and timeout.
    pub health: HealthConfig,
    /// What a health check sends (`ping` or `tools/list`).
    pub probe_method: hale_mcp::ProbeMethod,
    /// The breaker.
    pub breaker: BreakerConfig,
    /// `circuitBreaker.enabled`: false makes the breaker only track and report.
    pub breaker_enabled: bool,
    /// `circuitBreaker.perTool`: each tool has a breaker of its own too.
    pub per_tool: bool,
    /// `failureHandling.retryBudget`: the share of a retry each request earns (0: none).
    pub retry_budget: f64,
    /// Whether a tool result with `isError: true` counts as a failure for the breaker
    /// (`failureHandling.toolErrorsAreFailures`).
    pub tool_errors_are_failures: bool,
}

impl Settings {
    /// True if an upstream made with `other` would be this one: the same backend
    /// (address, transport, credentials) with the same deadlines, limits, health checks
    /// and breaker. A reload keeps such an upstream as it is.
    pub fn same_as(&self, other: &Settings) -> bool {
        let (a, b) = (&self.backend, &other.backend);
        a.name == b.name
            && a.url == b.url
            && a.transport == b.transport
            && a.credentials.same_as(&b.credentials)
            && a.tls == b.tls
            && a.stdio == b.stdio
            && a.failure_codes == b.failure_codes
            && self.request_timeout == other.request_timeout
            && self.max_sessions == other.max_sessions
            && self.max_list_items == other.max_list_items
            && self.health == other.health
            && self.probe_method == other.probe_method
            && self.breaker == other.breaker
            && self.breaker_enabled == other.breaker_enabled
            && self.per_tool == other.per_tool
            && self.retry_budget == other.retry_budget
            && self.tool_errors_are_failures == other.tool_errors_are_failures
    }

    /// Backend `backend`'s settings in `config`.
    pub fn of(config: &VmcpConfig, backend: &BackendConfig) -> Self {
        Settings {
            backend: backend.clone(),
            request_timeout: config.timeout_for(&backend.name),
            max_sessions: config.max_sessions_per_backend,
            max_list_items: config.max_tools_per_backend,
            health: config.health.clone(),
            probe_method: config.health_check_method,
            breaker: config.breaker.clone(),
            breaker_enabled: config.breaker_enabled,
            per_tool: config.breaker_per_tool,
            retry_budget: config.retry_budget,
            tool_errors_are_failures: config.tool_errors_are_failures,
        }
    }
}

/// On whose behalf a guarded request goes, and what it feeds.
#[derive(Default)]
struct Scope<'a> {
    /// The client session it is for (`None`: hale's own, or the shared session).
    owner: Option<&'a Arc<dyn Owner>>,
    /// The tool's own breaker, for a `tools/call`.
    tool: Option<&'a Arc<tools::ToolCircuit>>,
    /// Whether its failure counts with the health tracker too (a list refresh).
    feeds_health: bool,
}

/// Why a call to a backend failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The breaker refused it (in this state): the backend was not contacted.
    Refused(hale_core::BreakerState),
    /// The tool's own breaker refused it: the backend was not contacted.
    ToolRefused {
        /// The backend's name for the tool.
        tool: String,
        /// Until its next trial, when known.
        retry_after: Option<Duration>,
        /// Why its circuit opened.
        reason: Option<String>,
    },
    /// The backend asked hale to slow down (HTTP 429) and the wait is not over: it was
    /// not contacted.
    RateLimited(Duration),
    /// The backend (or the way to it) failed, or answered with a JSON-RPC error.
    Backend(McpError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(state) => write!(f, "circuit {state}"),
            CallError::ToolRefused { tool, .. } => write!(f, "tool {tool:?}: its circuit is open"),
            CallError::RateLimited(left) => write!(
                f,
                "it asked hale to slow down (HTTP 429): retry after {}s",
                left.as_secs().max(1)
            ),
            CallError::Backend(e) => e.fmt(f),
        }
    }
}

/// What an operator set for a backend (the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serving as usual.
    Active,
    /// Taking no new work: its tools are withdrawn and only clients that already have a
    /// backend session on it may go on calling it; calls in flight finish.
    Draining,
    /// Out of service: withdrawn, every new call refused; calls in flight finish.
    Maintenance,
}

impl Mode {
    /// `active`, `draining` or `maintenance`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::Draining => "draining",
            Mode::Maintenance => "maintenance",
        }
    }

    fn from_u8(n: u8) -> Mode {
        match n {
            1 => Mode::Draining,
            2 => Mode::Maintenance,
            _ => Mode::Active,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Mode::Active),
            "draining" | "drain" => Ok(Mode::Draining),
            "maintenance" => Ok(Mode::Maintenance),
            other => Err(format!(
                "expected active, draining or maintenance, got {other:?}"
            )),
        }
    }
}

/// What an operator asks of a backend's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitOverride {
    /// Refuse every call until cleared.
    Open,
    /// Admit every call, ignore outcomes, until cleared.
    Closed,
    /// Back to automatic (starts closed, in a new generation).
    Auto,
}

impl std::str::FromStr for CircuitOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(CircuitOverride::Open),
            "closed" => Ok(CircuitOverride::Closed),
            "auto" => Ok(CircuitOverride::Auto),
            other => Err(format!("expected open, closed or auto, got {other:?}")),
        }
    }
}

/// One backend and everything hale keeps about it.
pub struct Upstream {
    settings: Settings,
    target: target::Target,
    /// Its health tracker and breaker.
    pub health: Health,
    /// Per thread, the shared request client (lists, stateless backends, modern clients).
    shared: shared::Shared,
    /// Each client session's own backend session.
    sessions: sessions::BackendSessions,
    /// What it lists, once fetched.
    lists: lists::Lists,
    /// What it lists to clients by their declared capabilities, and the backend sessions
    /// 2026-07-28 callers of a profile go through where it lists them something else.
    profiles: profiles::ByProfile,
    /// Request metrics, handles kept.
    metrics: request_metrics::RequestMetrics,
    /// What may be retried, and how many retries are left.
    retries: retry::RetryBudget,
    /// It refused the handshake: 2026-07-28 only, no client sessions of its own.
    modern_only: AtomicBool,
    signals: Arc<Signals>,
    /// Cancelled when the upstream is retired (removed or replaced by a reload).
    retired: CancellationToken,
    /// The operator's [`Mode`], as a number.
    mode: std::sync::atomic::AtomicU8,
    /// Until when the backend asked not to be called (HTTP 429 with `Retry-After`), in
    /// milliseconds after `born`; 0: it did not. One atomic load on the call path.
    slow_down_until: std::sync::atomic::AtomicU64,
    born: tokio::time::Instant,
    /// A stdio backend's process and its loopback front.
    local: Option<stdio::Local>,
    /// Where it is, as its spans name it.
    peer: traced::Peer,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An upstream in health state `unknown` with a closed breaker, with a slot of its own
    /// for each of `workers` worker threads besides the main runtime's.
    pub fn new(
        settings: Settings,
        workers: usize,
        signals: Arc<Signals>,
    ) -> Result<Arc<Self>, ConfigError> {
        let slots = workers + 1;
        let health = Health::new(
            &settings.backend.name,
            &settings.health,
            &settings.breaker,
            settings.breaker_enabled,
            settings.per_tool,
        )?;

        // A stdio backend is reached on the loopback port its process is served on.
        let mut backend = settings.backend.clone();
        let local = match &backend.stdio {
            None => None,
            Some(stdio) => match stdio::Local::bind(&backend.name, stdio) {
                Ok(local) => {
                    backend.url = local.url().to_string();
                    Some(local)
                }
                Err(why) => {
                    // Never a panic: the backend is unreachable, and says why.
                    tracing::error!("{why}");
                    backend.url = "http://127.0.0.1:1/mcp".into();
                    None
                }
            },
        };
        let target = target::Target {
            config: backend,
            request_timeout: settings.request_timeout,
            max_list_items: settings.max_list_items,
            pool: Pool::per_thread(slots, crate::worker::current)
                .with_tls(settings.backend.tls.clone().unwrap_or_default()),
        };
        let peer = traced::Peer::of(&settings.backend);
        for outcome in ["retried", "budget_exhausted"] {
            metrics::counter!("toolhive_vmcp_backend_retries_total", "backend" => settings.backend.name.clone(), "outcome" => outcome).increment(0);
        }
        Ok(Arc::new_cyclic(|me: &Weak<Upstream>| {
            let me = me.clone();
            let hear: shared::Hear = Arc::new(move |note| {
                if let Some(upstream) = me.upgrade() {
                    upstream.hear(note);
                }
            });
            Upstream {
                health,
                shared: shared::Shared::new(target.clone(), slots, hear),
                sessions: sessions::BackendSessions::new(target.clone(), settings.max_sessions),
                lists: lists::Lists::default(),
                profiles: profiles::ByProfile::default(),
                metrics: request_metrics::RequestMetrics::default(),
                retries: retry::RetryBudget::new(settings.retry_budget),
                modern_only: AtomicBool::new(false),
                target,
                settings,
                signals,
                retired: CancellationToken::new(),
                mode: std::sync::atomic::AtomicU8::new(0),
                slow_down_until: std::sync::atomic::AtomicU64::new(0),
                born: tokio::time::Instant::now(),
                local,
                peer,
            }
        }))
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.settings.backend.name
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Routable: healthy or degraded, the breaker not open, usable, and active.
    pub fn routable(&self) -> bool {
        self.health.routable() && self.mode() == Mode::Active
    }

    /// What the operator set.
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }

    /// Sets the operator's mode; returns the one before. The catalog is told.
    pub fn set_mode(&self, mode: Mode) -> Mode {
        let before = Mode::from_u8(self.mode.swap(mode as u8, Ordering::AcqRel));
        if before != mode {
            self.signals.changed.notify_one();
        }
        before
    }

    /// Forces the breaker open or closed, or hands it back to its automatic rules; the
    /// transition is logged and counted like any other.
    pub fn set_circuit(&self, action: CircuitOverride) {
        let was_routable = self.routable();
        let circuit = match action {
            CircuitOverride::Open => self.health.breaker.force_open(),
            CircuitOverride::Closed => self.health.breaker.force_closed(),
            CircuitOverride::Auto => self.health.breaker.clear_override(),
        };
        self.report(&Changes {
            health: None,
            circuit,
            routability_changed: was_routable != self.routable(),
        });
    }

    /// An operator's override of tool `tool`'s own breaker (made now if the backend
    /// lists the tool and it was never called). `None`: no such tool.
    pub fn set_tool_circuit(&self, tool: &str, action: CircuitOverride) -> Option<()> {
        let circuit = self.health.tool_circuits.of(tool, || self.lists())?;
        let moved = match action {
            CircuitOverride::Open => circuit.breaker.force_open(),
            CircuitOverride::Closed => circuit.breaker.force_closed(),
            CircuitOverride::Auto => circuit.breaker.clear_override(),
        };
        if let Some(t) = moved {
            self.tool_moved(&circuit, &t);
        } else {
            // An override without a state change still shows in /status.
            self.signals.changed.notify_one();
        }
        Some(())
    }

    /// A tool's circuit moved: say so, and withdraw or restore the tool.
    fn tool_moved(&self, circuit: &Arc<tools::ToolCircuit>, t: &hale_core::Transition) {
        tools::moved(self.name(), circuit, t, &self.signals, &self.retired);
    }

    /// Its request deadline.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// Checks the backend until `cancel`, or until the upstream is retired (see
    /// [`monitor`]), every `healthCheckInterval` with its method and timeout.
    pub async fn monitor(self: Arc<Self>, cancel: CancellationToken) {
        let settings = MonitorSettings {
            interval: self.settings.health.check_interval,
            timeout: self.settings.health.check_timeout,
            method: self.settings.probe_method,
        };
        let stop = cancel.child_token();
        let (retired, ends) = (self.retired.clone(), stop.clone());
        let watch = tokio::spawn(async move {
            retired.cancelled().await;
            ends.cancel();
        });
        // A stdio backend's process starts with its monitor, and outlives it until the
        // upstream is retired or the vMCP has drained (`end_process`).
        if let Some(local) = &self.local {
            local.start();
        }
        // A time window (`slidingWindow: 60s`) wants the successes counted without the
        // lock folded in every second, or a quiet hour's calls would all land in the
        // second of the next failure and dilute its rate.
        let folds = self.health.breaker.needs_ticks().then(|| {
            let (me, stop) = (Arc::downgrade(&self), stop.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        () = stop.cancelled() => return,
                    }
                    let Some(me) = me.upgrade() else { return };
                    me.health.breaker.tick();
                    me.health.tool_circuits.tick();
                }
            })
        });
        monitor::run(&self.target, &self.health, &self.signals, settings, stop).await;
        watch.abort();
        if let Some(folds) = folds {
            folds.abort();
        }
    }

    /// Takes the upstream out of service for good (a reload removed or replaced it): its
    /// monitor stops, calls in flight end at once with an error, its client sessions'
    /// backend sessions and its shared clients are closed. The upstream set no longer
    /// holds it; requests that took it before finish with that error.
    pub(crate) async fn retire(&self) {
        self.retired.cancel();
        self.health.withdrawn.notify_waiters();
        self.sessions.close_all("removed").await;
        self.close_profile_sessions().await;
        self.shared.close_all().await;
        self.end_process().await;
    }

    /// A stdio backend: ends its process group and waits for it (at shutdown, once
    /// calls have drained; when retired). Nothing for an HTTP backend.
    pub(crate) async fn end_process(&self) {
        if let Some(local) = &self.local {
            local.end().await;
        }
    }

    /// True once retired.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.is_cancelled()
    }

    /// The backend as `/status` shows it (camelCase, URL credentials redacted, header
    /// names and the token's source only).
    pub fn status(&self) -> Value {
        let config = &self.settings.backend;
        let mut s = match &self.local {
            Some(local) => json!({
                "name": self.name(),
                "transport": "stdio",
                "stdio": local.describe(),
            }),
            None if config.stdio.is_some() => json!({"name": self.name(), "transport": "stdio"}),
            None => json!({
                "name": self.name(),
                "url": hale_mcp::redact_url(&config.url),
                "transport": config.transport.as_str(),
            }),
        };
        if let (Value::Object(s), Value::Object(h)) = (&mut s, self.health.status()) {
            s.extend(h);
        }
        s["sessions"] = json!(self.sessions.open());
        s["retries"] = self.retries.status();
        // Its tools whose own circuit is not closed (withdrawn, on trial, overridden).
        s["toolCircuits"] = json!(self.health.tool_circuits.status(|at| self.health.wall(at)));
        // What its limits did: how often the idlest session made room, or a client was
        // refused, and when last.
        s["limits"] = json!({"sessions": self.sessions.limit_status()});
        s["mode"] = json!(self.mode().as_str());
        if !config.credentials.is_empty() {
            s["credentials"] = config.credentials.describe();
        }
        if let Some(tls) = config.tls.as_ref().map(hale_mcp::Tls::describe)
            && !tls.is_null()
        {
            s["tls"] = tls;
        }
        s
    }

    /// Logs and counts what a change of health or breaker did, and wakes the catalog if
    /// routability changed.
    fn report(&self, changes: &Changes) {
        monitor::report(self.name(), &self.health, changes, &self.signals);
    }

    /// What the backend says on the listening shared client outside any call: a list
    /// change makes this upstream's lists stale; a resource update goes to whoever
    /// subscribed. Log messages there belong to no client and stay here.
    fn hear(&self, note: Notification) {
        if note.method.ends_with("/list_changed") {
            // Stale: the catalog task lists this backend again and rebuilds.
            self.lists.forget();
            self.signals.changed.notify_one();
        } else if note.method == "notifications/resources/updated" {
            let params = note.params.unwrap_or_default();
            if let Some(uri) = params.get("uri").and_then(Value::as_str) {
                self.signals.resource_updated(uri, &params);
            }
        } else {
            tracing::debug!(backend = %self.name(), method = %note.method, "a notification on the shared session; no client owns it");
        }
    }

    // --- clients ---------------------------------------------------------------------

    /// Takes over what `previous` (the upstream a reload replaces with this one, at the
    /// same address: only its deadlines, limits, checks or credentials changed) knew:
    /// its lists and, if it was routable, its last good check. Its tools then never
    /// leave the catalog while it is replaced; this upstream's own first check decides
    /// from there.
    pub(crate) fn take_over_from(&self, previous: &Upstream) {
        let (a, b) = (&self.settings.backend, &previous.settings.backend);
        if a.url != b.url || a.transport != b.transport || a.stdio != b.stdio {
            return; // another server: nothing it knew holds here
        }
        if let Some(lists) = previous.lists() {
            self.lists.set((*lists).clone());
            self.signals.lists_arrived();
        }
        if previous.routable() {
            let latency = previous.health.last_latency().unwrap_or_default();
            let _ = self
                .health
                .record_check(hale_core::CheckOutcome::Success { latency });
        }
    }

    /// The earliest moment a call refused now may go through: the breaker's next trial,
    /// or the next health check (which restores an unhealthy backend and moves an open
    /// breaker to half-open at once when it succeeds), whichever comes first. `None`
    /// when neither health nor the breaker holds calls back.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let now = std::time::Instant::now();
        let breaker = self.health.breaker.snapshot();
        let held = breaker.state != hale_core::BreakerState::Closed
            || !matches!(
                self.health.health(),
                hale_core::HealthState::Healthy | hale_core::HealthState::Degraded
            );
        if !held {
            return None;
        }
        let trial = breaker.retry_at.map(|at| at.saturating_duration_since(now));
        let (_, last_check) = self.health.cache_hint();
        let check = last_check
            .map(|at| (at + self.settings.health.check_interval).saturating_duration_since(now));
        match (trial, check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// This thread's shared client, connected on first use.
    pub(crate) async fn client(&self) -> Result<Arc<McpClient>, McpError> {
        self.shared.client().await
    }

    /// The client that carries `owner`'s requests to this backend: the owner's own
    /// backend session for a stateful backend (opened now on first use, with the
    /// client's capabilities and info), else the shared one (stateless backends, modern
    /// clients, hale's own requests).
    pub(crate) async fn client_for(
        &self,
        owner: Option<&Arc<dyn Owner>>,
        profile: Option<&Profile>,
    ) -> Result<Arc<McpClient>, McpError> {
        let shared = self.client().await?;
        let Some(owner) = owner else {
            // A 2026-07-28 caller of a profile this backend lists something else to goes
            // through that profile's own backend session, as it would directly.
            if let Some(p) = profile
                && let Some(base) = self.lists()
                && self.profiles.differs(p, &base)
                && let Some(own) = self.profile_session(p, &shared).await
            {
                return Ok(own);
            }
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
        match self.sessions.get_or_open(owner, &shared).await {
            Ok(client) => Ok(client),
            Err(e) if modern && e.is_refused_handshake() => {
                // It refused the handshake: 2026-07-28 only, for every client.
                self.modern_only.store(true, Ordering::Relaxed);
                Ok(shared)
            }
            Err(e) => Err(e),
        }
    }

    /// The backend session of 2026-07-28 callers of `profile` on a handshake-era backend
    /// with sessions (opened with the profile's capabilities on first use, bounded);
    /// `None` where the shared client serves every profile (a 2026-07-28 or stateless
    /// backend), past the bound, or when it cannot be opened.
    async fn profile_session(
        &self,
        profile: &Profile,
        shared: &Arc<McpClient>,
    ) -> Option<Arc<McpClient>> {
        let (modern, has_session) = shared.era().await;
        if modern || !has_session || self.modern_only.load(Ordering::Relaxed) {
            return None;
        }
        let cell = self.profiles.session(profile)?;
        let opened = cell
            .get_or_try_init(|| async {
                let kind = target::ClientKind::Session {
                    capabilities: profile.capabilities(),
                    client_info: json!({"name": "hale-vmcp", "version": env!("CARGO_PKG_VERSION")}),
                    // Shared by a profile's callers: what the backend asks outside a
                    // call goes to the one call in flight, if there is one.
                    asks: None,
                };
                self.target.connect(kind).await.map(Arc::new)
            })
            .await;
        match opened {
            Ok(client) => Some(client.clone()),
            Err(e) => {
                tracing::debug!(backend = %self.name(), error = %e, "no backend session for a capability profile; the shared one serves it");
                self.profiles.drop_session(profile);
                None
            }
        }
    }

    /// What this backend lists to a caller of `profile`: the shared lists where they are
    /// the same, fetched once per profile while the shared ones stand (through the
    /// profile's own backend session on a handshake-era backend, so listing opens no
    /// client's session). `None` before the backend is listed.
    pub(crate) async fn lists_for(
        self: &Arc<Self>,
        profile: &Profile,
    ) -> Option<Arc<BackendLists>> {
        let base = self.lists()?;
        if profile.is_shared() {
            return Some(self.health.tool_circuits.offered(base));
        }
        if let Some(mine) = self.profiles.lists(profile, &base) {
            return Some(self.health.tool_circuits.offered(mine));
        }
        let name = self.name().to_string();
        let capabilities = profile.capabilities();
        let listed = self
            .guarded(
                "tools/list",
                Scope::default(),
                async || {
                    let shared = self.client().await?;
                    Ok(self
                        .profile_session(profile, &shared)
                        .await
                        .unwrap_or(shared))
                },
                |_| false,
                async |client| list_everything(&client, &name, Some(&capabilities)).await,
            )
            .await;
        match listed {
            Ok(lists) => Some(
                self.health
                    .tool_circuits
                    .offered(self.profiles.keep(profile, &base, lists)),
            ),
            Err(e) => {
                // The shared lists stand in: better than none, and tried again next time.
                tracing::debug!(backend = %name, error = %e, "cannot list for a client's capabilities; the shared lists stand in");
                Some(self.health.tool_circuits.offered(base))
            }
        }
    }

    /// Lets a handshake-era backend's shared session send log lines down to `rank`
    /// (level `name`) for a 2026-07-28 caller that asked for them.
    pub(crate) async fn lower_shared_log_level(&self, rank: u8, name: &str) {
        self.shared.lower_log_level(rank, name).await;
    }

    /// True if the backend speaks the handshake era (it may send requests mid-call).
    pub(crate) async fn speaks_handshake(&self) -> bool {
        match self.client().await {
            Ok(client) => !client.era().await.0,
            Err(_) => false,
        }
    }

    /// Subscribes the shared client to `uri` (the backend's own URI):
    /// `resources/subscribe` on a handshake-era backend, the URI in the listen stream of
    /// a 2026-07-28 one.
    pub(crate) async fn subscribe_shared(&self, uri: &str) -> Result<(), McpError> {
        self.client().await?.subscribe_resource(uri).await
    }

    /// Client session `id`'s backend session, if one is open.
    pub(crate) fn session_of(&self, id: &str) -> Option<Arc<McpClient>> {
        self.sessions.of(id)
    }

    /// Ends client session `id`'s backend session, counting it as `event`.
    pub(crate) async fn close_session(&self, id: &str, event: &'static str) {
        self.sessions.close(id, event).await;
    }

    /// Lets go of client session `id`'s backend session without ending it.
    pub(crate) fn forget_session(&self, id: &str) {
        self.sessions.forget(id);
    }

    /// Lets go of every backend session without ending them.
    pub(crate) fn forget_all_sessions(&self) {
        self.sessions.forget_all();
    }

    /// Ends client session `id`'s backend session `session`: through the client this
    /// replica has for it, or one made for the purpose (another replica opened it).
    pub(crate) async fn end_session(&self, id: &str, session: &BackendSession) {
        if self.sessions.of(id).is_some() {
            self.sessions.close(id, "closed").await;
        } else if let Ok(shared) = self.client().await {
            self.sessions.end_elsewhere(session, &shared).await;
            metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => self.name().to_string(), "event" => "closed").increment(1);
        }
    }

    /// Ends every backend session (the upstream goes away, or the vMCP stops).
    pub(crate) async fn close_all_sessions(&self, event: &'static str) {
        self.sessions.close_all(event).await;
        self.close_profile_sessions().await;
    }

    async fn close_profile_sessions(&self) {
        let open = self.profiles.take_sessions();
        futures_util::future::join_all(open.iter().map(|c| c.close())).await;
    }

    // --- calls -----------------------------------------------------------------------

    /// Calls the backend through its breaker on `owner`'s behalf; the outcome feeds the
    /// breaker. What the backend sends while it answers goes to `hooks`.
    pub(crate) async fn call(
        &self,
        owner: Option<&Arc<dyn Owner>>,
        profile: Option<&Profile>,
        method: &str,
        mut params: Value,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, CallError> {
        let tool_errors = self.settings.tool_errors_are_failures && method == "tools/call";
        let tool = match (method, params.get("name").and_then(Value::as_str)) {
            ("tools/call", Some(name)) => self.health.tool_circuits.of(name, || self.lists()),
            _ => None,
        };
        let judge =
            |result: &Value| tool_errors && result.get("isError") == Some(&Value::Bool(true));
        let traced = traced::Traced::start(
            self.name(),
            &self.peer,
            self.health.breaker.state().as_str(),
            method,
            &mut params,
        );
        let guarded = async {
            let request = async |client: Arc<McpClient>, params: Value| match hooks {
                Some(hooks) => client.request_hooked(method, Some(params), hooks).await,
                None => client.request(method, Some(params)).await,
            };
            let attempt = async |params: Value| {
                self.guarded(
                    method,
                    Scope {
                        owner,
                        tool: tool.as_ref(),
                        feeds_health: false,
                    },
                    async || self.client_for(owner, profile).await,
                    &judge,
                    async |client| request(client, params).await,
                )
                .await
            };
            self.retries.earn();
            // Kept for a second attempt, when one may be made.
            let spare = self.retries.on().then(|| params.clone());
            let first = attempt(params).await;
            let (Some(again), Err(CallError::Backend(e))) = (spare, &first) else {
                return first;
            };
            if !retry::worth_it(e, self.retry_is_safe(method, &again)) {
                return first;
            }
            let outcome = if self.retries.spend() {
                "retried"
            } else {
                "budget_exhausted"
            };
            metrics::counter!("toolhive_vmcp_backend_retries_total", "backend" => self.name().to_string(), "outcome" => outcome).increment(1);
            if outcome != "retried" {
                return first;
            }
            tracing::debug!(backend = %self.name(), method, error = %e, "retrying once");
            traced::mark(hale_telemetry::names::RETRIED, true);
            attempt(again).await
        };
        let Some(traced) = traced else {
            return guarded.await;
        };
        // Transitions this request causes become events on its span (when recorded).
        let result = match traced.call.context() {
            Some(cx) => hale_telemetry::FutureExt::with_context(guarded, cx.clone()).await,
            None => guarded.await,
        };
        traced.finish(method, &result);
        result
    }

    /// Whether request `method` with `params` may be sent twice: a listing, read or
    /// prompt, or a call of a tool this backend annotates read-only or idempotent.
    fn retry_is_safe(&self, method: &str, params: &Value) -> bool {
        let annotations = (method == "tools/call")
            .then(|| {
                let name = params.get("name")?.as_str()?;
                let lists = self.lists()?;
                lists
                    .tools
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
                    .and_then(|t| t.get("annotations").cloned())
            })
            .flatten();
        retry::is_safe(method, annotations.as_ref())
    }

    /// How long the backend still asked not to be called (HTTP 429), if it did.
    fn slowing_down(&self) -> Option<Duration> {
        let until = self.slow_down_until.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let now = self.born.elapsed().as_millis() as u64;
        if now >= until {
            let _ = self.slow_down_until.compare_exchange(
                until,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return None;
        }
        Some(Duration::from_millis(until - now))
    }

    /// Runs `op` on the request client if the backend's breaker (and, for a tool call,
    /// the tool's) admits it and the backend has not asked hale to wait, and feeds the
    /// outcome and how long it took to the breakers and the request metrics (labelled
    /// `method`), and a failure to the health tracker too when the scope says so
    /// (fan-outs). `failed` says whether an answer counts as a failure all the same.
    async fn guarded<T>(
        &self,
        method: &str,
        Scope {
            owner,
            tool,
            feeds_health,
        }: Scope<'_>,
        choose: impl AsyncFnOnce() -> Result<Arc<McpClient>, McpError>,
        failed: impl Fn(&T) -> bool,
        op: impl AsyncFnOnce(Arc<McpClient>) -> Result<T, McpError>,
    ) -> Result<T, CallError> {
        if let Some(left) = self.slowing_down() {
            return Err(CallError::RateLimited(left));
        }
        let permit = match self.health.breaker.try_acquire() {
            Ok(p) => p,
            Err(rejected) => {
                metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => self.name().to_string()).increment(1);
                return Err(CallError::Refused(rejected.state));
            }
        };
        // Inside the backend's breaker, the tool's own.
        let tool_permit = match tool.map(|t| (t, t.breaker.try_acquire())) {
            None => None,
            Some((t, Ok(p))) => {
                if let Some(moved) = p.transition() {
                    self.tool_moved(t, moved);
                }
                Some((t, p))
            }
            Some((t, Err(rejected))) => {
                drop(permit);
                return Err(CallError::ToolRefused {
                    tool: t.name.clone(),
                    retry_after: rejected.retry_after,
                    reason: t.reason(),
                });
            }
        };
        let started = tokio::time::Instant::now();
        let result = match choose().await {
            Ok(client) => {
                let replaced = client.sessions_replaced();
                let result = op(client.clone()).await;
                let lost = client.sessions_replaced().saturating_sub(replaced);
                if lost > 0 {
                    // Sent again on a new backend session (the backend lost its own).
                    traced::mark(hale_telemetry::names::RETRIED, true);
                }
                if owner.is_some()
                    && let Err(e) = &result
                    && e.is_refused_handshake()
                {
                    // The backend no longer takes the handshake (upgraded in place to
                    // 2026-07-28): its clients go through the shared session from now on.
                    self.modern_only.store(true, Ordering::Relaxed);
                }
                if let Some(owner) = owner
                    && lost > 0
                    && self
                        .sessions
                        .of(owner.id())
                        .is_some_and(|own| Arc::ptr_eq(&own, &client))
                {
                    // The backend lost this client's session; hale-mcp opened a new
                    // one for this client alone, which the session store must know
                    // (other replicas would take over the dead one).
                    metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => self.name().to_string(), "event" => "lost").increment(lost);
                    sessions::record(owner, self.name(), &client).await;
                }
                result
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        let outcome = match &result {
            Ok(answer) if failed(answer) => CallOutcome::Failure,
            Ok(_) => CallOutcome::Success,
            Err(e) => e.call_outcome(&self.settings.backend.failure_codes),
        };
        if let Err(McpError::RateLimited { retry_after, .. }) = &result {
            // Alive, asking for less: honoured, not counted as down.
            let wait = retry_after.unwrap_or(Duration::from_secs(1));
            let until = (self.born.elapsed() + wait).as_millis() as u64;
            self.slow_down_until.store(until.max(1), Ordering::Release);
            tracing::info!(backend = %self.name(), ?wait, "the backend asked hale to slow down (HTTP 429); calls wait");
        }
        self.metrics.record(
            self.name(),
            method,
            started.elapsed().as_secs_f64(),
            outcome == CallOutcome::Success,
        );
        if feeds_health
            && let Err(e) = &result
            && e.category().is_some()
        {
            // A list refresh is a fan-out: its failure counts with the tracker too.
            let changes = self
                .health
                .record_fan_out_failure(e.check_outcome(started.elapsed()));
            self.report(&changes);
        }
        if let Err(e) = &result
            && let Some(category) = e.category()
        {
            metrics::counter!("toolhive_vmcp_backend_errors_total", "backend" => self.name().to_string(), "method" => method.to_string(), "category" => category.as_str()).increment(1);
            // A transport failure may also have lost the shared session: start afresh
            // next time. (A client's own backend session re-initializes by itself when
            // the backend says it lost it.)
            if owner.is_none() {
                self.shared.reset();
            }
        }
        if let Some((t, p)) = tool_permit {
            // The tool's count sees what the tool did: its answers, its JSON-RPC errors,
            // its timeouts and slowness. Failures of the way to the backend (refused,
            // reset, 5xx, TLS, a malformed answer, its session gone) are the backend's
            // and leave the tool's count alone: an outage must not withdraw every tool
            // that happened to be called during it.
            let backends = matches!(&result, Err(e) if e.category().is_some_and(|c| c != FailureCategory::Timeout));
            if backends {
                drop(p);
            } else if let Some(moved) = p.record_timed(outcome, took) {
                self.tool_moved(t, &moved);
            }
        }
        let was_routable = self.routable();
        if let Some(t) = permit.record_timed(outcome, took) {
            let changes = Changes {
                health: None,
                circuit: Some(t),
                routability_changed: was_routable != self.routable(),
            };
            self.report(&changes);
        } else if outcome == CallOutcome::Failure || self.health.breaker.is_slow(took) {
            // No transition, but passive health may have changed.
            self.report(&Changes::default());
        }
        result.map_err(CallError::Backend)
    }

    // --- lists -----------------------------------------------------------------------

    /// Its lists, if fetched and not stale.
    pub fn lists(&self) -> Option<Arc<BackendLists>> {
        self.lists.get()
    }

    /// Fetches the lists of the capabilities the backend declared, through the breaker.
    /// A backend whose listing cannot be used (refused, or breaking the protocol or
    /// hale's limits) is withdrawn as unusable, and tried again after a check interval.
    pub(crate) async fn refresh_lists(self: &Arc<Self>) -> Result<(), String> {
        let name = self.name().to_string();
        // One admission for the whole refresh: its failure feeds the breaker like a call's.
        let lists = self
            .guarded(
                "tools/list",
                Scope {
                    feeds_health: true,
                    ..Scope::default()
                },
                async || self.client().await,
                |_| false,
                async |client| list_everything(&client, &name, None).await,
            )
            .await;
        let lists = match lists {
            Ok(lists) => lists,
            Err(CallError::Backend(e))
                if matches!(e, McpError::Protocol { .. } | McpError::Rpc { .. }) =>
            {
                // It answers, but its listing cannot be used: withdraw it (it never takes
                // the other backends' lists down), say why in /status, try again later.
                let why = e.to_string();
                tracing::warn!(backend = %name, reason = %why, "backend withdrawn: it answers but its capabilities cannot be used");
                if self.health.set_unusable(Some(why.clone())) {
                    self.health.withdrawn.notify_waiters();
                    self.signals.changed.notify_one();
                }
                let (upstream, again) = (Arc::downgrade(self), self.settings.health.check_interval);
                tokio::spawn(async move {
                    tokio::time::sleep(again).await;
                    if let Some(upstream) = upstream.upgrade() {
                        upstream.signals.changed.notify_one();
                    }
                });
                return Err(format!("unusable: {why}"));
            }
            // Asked to slow down: it is not failing; the lists it gave last still hold.
            Err(
                e @ (CallError::RateLimited(_) | CallError::Backend(McpError::RateLimited { .. })),
            ) if self.lists().is_some() => {
                tracing::debug!(backend = %name, error = %e, "lists not refreshed: the backend asked hale to slow down");
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        if self.health.set_unusable(None) {
            self.signals.changed.notify_one();
        }
        self.lists.set(lists);
        self.signals.lists_arrived();
        Ok(())
    }
}

/// Everything `client`'s server lists (of the capabilities it declared), as a caller
/// that declared `capabilities` sees it (`None`: as the client itself).
async fn list_everything(
    client: &McpClient,
    backend: &str,
    capabilities: Option<&Value>,
) -> Result<BackendLists, McpError> {
    let info = client.server_info().await;
    let mut lists = BackendLists {
        backend: backend.to_string(),
        ..BackendLists::default()
    };
    let list = async |method: &str, field: &str| client.list_for(method, field, capabilities).await;
    if info.has("tools") {
        lists.tools = list("tools/list", "tools").await?;
    }
    if info.has("resources") {
        lists.resources = list("resources/list", "resources").await?;
        lists.templates = list("resources/templates/list", "resourceTemplates")
            .await
            .unwrap_or_default();
    }
    if info.has("prompts") {
        lists.prompts = list("prompts/list", "prompts").await?;
    }
    Ok(lists)
}
