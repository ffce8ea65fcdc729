//! The upstream side: one [`Upstream`] per backend, owning everything about that backend
//! — its health and breaker ([`health`]), the monitor that checks it ([`monitor`]), its
//! keep-alive connections and shared request clients (`shared`), each client session's
//! own backend session (`sessions`), its lists (`lists`), its request metrics
//! (`metrics`), and which protocol era it speaks — so that a backend can be added,
//! replaced or removed as one unit.
//!
//! Nothing here knows about client sessions beyond the [`Owner`] of a backend session,
//! nor about the catalog: what the upstreams change goes up through [`Signals`] (a wake-up
//! for the catalog, a generation counter for lists, and a sink for resource updates).

mod call;
pub mod health;
mod lists;
mod metrics;
pub mod monitor;
mod sessions;
mod set;
mod shared;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hale_core::{BreakerConfig, ConfigError, HealthConfig};
use hale_mcp::Pool;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::config::{BackendConfig, VmcpConfig};

pub(crate) use call::CallError;
pub use health::{Changes, Health, TokioClock};
pub use lists::BackendLists;
pub use monitor::FirstRound;
pub(crate) use sessions::Owner;
pub use set::Upstreams;

/// What a resource update on a shared client is handed to: the URI and the
/// notification's params.
pub(crate) type ResourceSink = Box<dyn Fn(&str, &Value) + Send + Sync>;

/// How the upstreams tell the rest of the vMCP that something changed. Atomics and a
/// wake-up only: nothing here is locked.
#[derive(Default)]
pub struct Signals {
    /// Woken when an upstream's routability or lists changed (the catalog task waits).
    pub changed: Notify,
    /// Bumped whenever any upstream's lists change; a catalog remembers the value it was
    /// built from.
    lists_generation: AtomicU64,
    /// Upstreams checked at least once, for `/readyz`.
    pub first_round: FirstRound,
    /// Where resource updates arriving on shared clients go (set once, by the vMCP).
    resource_updates: OnceLock<ResourceSink>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("lists_generation", &self.lists_generation())
            .finish_non_exhaustive()
    }
}

impl Signals {
    /// The current lists generation.
    pub(crate) fn lists_generation(&self) -> u64 {
        self.lists_generation.load(Ordering::Acquire)
    }

    fn lists_changed(&self) {
        self.lists_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Sends resource updates of shared clients to `sink` from now on.
    pub(crate) fn on_resource_update(&self, sink: ResourceSink) {
        let _ = self.resource_updates.set(sink);
    }

    fn resource_updated(&self, uri: &str, params: &Value) {
        if let Some(sink) = self.resource_updates.get() {
            sink(uri, params);
        }
    }
}

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
    /// The breaker.
    pub breaker: BreakerConfig,
    /// `circuitBreaker.enabled`: false makes the breaker only track and report.
    pub breaker_enabled: bool,
}

impl Settings {
    /// Backend `backend`'s settings in `config`.
    pub fn of(config: &VmcpConfig, backend: &BackendConfig) -> Self {
        Settings {
            backend: backend.clone(),
            request_timeout: config.timeout_for(&backend.name),
            max_sessions: config.max_sessions_per_backend,
            max_list_items: config.max_tools_per_backend,
            health: config.health.clone(),
            breaker: config.breaker.clone(),
            breaker_enabled: config.breaker_enabled,
        }
    }
}

/// One backend and everything hale keeps about it.
pub struct Upstream {
    settings: Settings,
    /// Its health tracker and breaker.
    pub health: Health,
    /// Keep-alive connections, one pool per thread, shared by all its clients.
    pool: Pool,
    /// Per thread, the shared request client (lists, stateless backends, modern clients).
    shared: shared::Shared,
    /// Each client session's own backend session.
    sessions: sessions::BackendSessions,
    /// What it lists, once fetched.
    lists: lists::Lists,
    /// Request metrics, handles kept.
    metrics: metrics::RequestMetrics,
    /// It refused the handshake: 2026-07-28 only, no client sessions of its own.
    modern_only: AtomicBool,
    signals: Arc<Signals>,
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
        )?;
        Ok(Arc::new(Upstream {
            health,
            pool: Pool::per_thread(slots, crate::worker::current),
            shared: shared::Shared::new(slots),
            sessions: sessions::BackendSessions::default(),
            lists: lists::Lists::default(),
            metrics: metrics::RequestMetrics::default(),
            modern_only: AtomicBool::new(false),
            settings,
            signals,
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

    /// Routable: healthy or degraded, the breaker not open, and usable.
    pub fn routable(&self) -> bool {
        self.health.routable()
    }

    /// Its request deadline.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    fn config(&self) -> &BackendConfig {
        &self.settings.backend
    }

    /// The backend as `/status` shows it (camelCase, URL credentials redacted, header
    /// names and the token's source only).
    pub fn status(&self) -> Value {
        let mut s = json!({
            "name": self.name(),
            "url": hale_mcp::redact_url(&self.config().url),
            "transport": self.config().transport.as_str(),
        });
        if let (Value::Object(s), Value::Object(h)) = (&mut s, self.health.status()) {
            s.extend(h);
        }
        s["sessions"] = json!(self.sessions.open());
        if !self.config().credentials.is_empty() {
            s["credentials"] = self.config().credentials.describe();
        }
        s
    }

    /// Logs and counts what a change of health or breaker did, and wakes the catalog if
    /// routability changed.
    pub(crate) fn report(&self, changes: &Changes) {
        monitor::report(self, changes);
    }
}
