//! Live configuration: the configuration file read again on SIGHUP, when it changes, or
//! when asked (`Handle::reload`), and applied without dropping anyone.
//!
//! Backends are matched by name. One whose settings did not change keeps its `Upstream`
//! as it is (health, breaker, lists, shared clients and every client's backend session);
//! a new one starts in `unknown` and is checked at once; a removed one, or one whose
//! settings changed, is retired (its monitor stops, calls in flight to it end with an
//! error, its backend sessions are closed) and, if changed, replaced by a fresh one. The
//! routing settings (aggregation, partial failures) change with the file. Clients hear
//! what changed in the catalog through `list_changed`.
//!
//! A file that cannot be used changes nothing: the running configuration stays, the
//! error (naming the key, never a secret) is logged, counted and shown in `/status`.
//! What is bound at start — the listen address, `name`, `allowedHosts`,
//! `allowedOrigins`, the connection timeouts and the auth rules — needs a restart; a
//! reload that changes one of the comparable ones says so in one warning.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigFileError, VmcpConfig};
use crate::route::{RouteSettings, Router, Upstreams};
use crate::upstream::{Settings, Upstream};

/// How often the file is looked at for changes.
const POLL: Duration = Duration::from_secs(1);

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The vMCP was not started from a file (`--backend` flags).
    #[error("the vMCP was started without a configuration file: nothing to reload")]
    NoFile,
    /// The file cannot be used.
    #[error("{0}")]
    Config(#[from] ConfigFileError),
    /// The new backends' settings are unusable.
    #[error("{0}")]
    Backend(#[from] hale_core::ConfigError),
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Backends that were not there before.
    pub added: Vec<String>,
    /// Backends whose settings changed (replaced by fresh ones).
    pub changed: Vec<String>,
    /// Backends no longer in the file (retired).
    pub removed: Vec<String>,
    /// Backends kept as they were.
    pub unchanged: Vec<String>,
}

/// How new upstreams are started.
pub(crate) struct Spawner {
    pub(crate) tasks: TaskTracker,
    pub(crate) stop: CancellationToken,
    pub(crate) workers: usize,
}

/// What the last reload did, for `/status`.
#[derive(Default)]
struct Record {
    reloads: u64,
    failures: u64,
    last: Option<Value>,
}

/// Reads the configuration file again and applies it.
pub(crate) struct Reloader {
    path: std::sync::OnceLock<PathBuf>,
    router: Arc<Router>,
    /// The configuration applied now, and the one the file last gave (before the
    /// start-up overrides): one reload at a time.
    state: tokio::sync::Mutex<(VmcpConfig, VmcpConfig)>,
    spawner: Mutex<Option<Spawner>>,
    record: Mutex<Record>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path.get())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for a vMCP running `config` (read from `path`, if any).
    pub(crate) fn new(router: Arc<Router>, config: VmcpConfig) -> Self {
        Reloader {
            path: std::sync::OnceLock::new(),
            router,
            state: tokio::sync::Mutex::new((config.clone(), config)),
            spawner: Mutex::new(None),
            record: Mutex::new(Record::default()),
        }
    }

    /// The file the configuration comes from.
    pub(crate) fn set_path(&self, path: PathBuf) {
        let _ = self.path.set(path);
    }

    /// New upstreams' monitors go to `spawner` from now on (once the vMCP runs).
    pub(crate) fn start(&self, spawner: Spawner) {
        *self.spawner.lock().unwrap_or_else(PoisonError::into_inner) = Some(spawner);
    }

    /// Reads the file and applies it; on any error the running configuration stays.
    pub(crate) async fn reload(&self, why: &str) -> Result<ReloadSummary, ReloadError> {
        let outcome = self.try_reload().await;
        let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        record.reloads += 1;
        match &outcome {
            Ok(s) => {
                tracing::info!(trigger = why, added = ?s.added, changed = ?s.changed, removed = ?s.removed, unchanged = s.unchanged.len(), "configuration reloaded");
                crate::upstream::traced::decision("configuration reloaded", false, || {
                    vec![
                        opentelemetry::KeyValue::new("hale.reload.trigger", why.to_string()),
                        opentelemetry::KeyValue::new("hale.reload.added", format!("{:?}", s.added)),
                        opentelemetry::KeyValue::new(
                            "hale.reload.changed",
                            format!("{:?}", s.changed),
                        ),
                        opentelemetry::KeyValue::new(
                            "hale.reload.removed",
                            format!("{:?}", s.removed),
                        ),
                    ]
                });
                metrics::counter!("toolhive_vmcp_config_reloads_total", "result" => "success")
                    .increment(1);
                metrics::gauge!("toolhive_vmcp_config_last_reload_successful").set(1.0);
                record.last = Some(json!({
                    "at": at, "trigger": why, "result": "success",
                    "added": s.added, "changed": s.changed, "removed": s.removed,
                }));
            }
            Err(e) => {
                tracing::error!(trigger = why, error = %e, "configuration reload refused: the running configuration stays");
                metrics::counter!("toolhive_vmcp_config_reloads_total", "result" => "failure")
                    .increment(1);
                metrics::gauge!("toolhive_vmcp_config_last_reload_successful").set(0.0);
                record.failures += 1;
                record.last = Some(json!({
                    "at": at, "trigger": why, "result": "failure", "error": e.to_string(),
                }));
            }
        }
        outcome
    }

    async fn try_reload(&self) -> Result<ReloadSummary, ReloadError> {
        let path = self.path.get().ok_or(ReloadError::NoFile)?;
        let mut state = self.state.lock().await;
        let from_file = VmcpConfig::from_file(path)?;
        let restart = needs_restart(&state.1, &from_file);
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "these keys changed but take effect only on restart");
        }
        // What was bound at start stays as it is (with any start-up overrides).
        let running = &state.0;
        let applied = VmcpConfig {
            name: running.name.clone(),
            listen: running.listen,
            allowed_hosts: running.allowed_hosts.clone(),
            allowed_origins: running.allowed_origins.clone(),
            read_timeout: running.read_timeout,
            idle_timeout: running.idle_timeout,
            session_idle_timeout: running.session_idle_timeout,
            incoming_auth: running.incoming_auth.clone(),
            status_auth: running.status_auth.clone(),
            admin: running.admin.clone(),
            telemetry: running.telemetry.clone(),
            ..from_file.clone()
        };
        let summary = self.apply(&applied).await?;
        *state = (applied, from_file);
        Ok(summary)
    }

    /// Swaps in the upstreams `config` asks for, keeping the unchanged ones.
    async fn apply(&self, config: &VmcpConfig) -> Result<ReloadSummary, ReloadError> {
        let old = self.router.upstreams();
        let workers = self
            .spawner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |s| s.workers);
        let mut summary = ReloadSummary::default();
        let (mut list, mut fresh) = (Vec::new(), Vec::new());
        for b in &config.backends {
            let settings = Settings::of(config, b);
            let previous = match old.get(&b.name) {
                Some(u) if u.settings().same_as(&settings) => {
                    summary.unchanged.push(b.name.clone());
                    list.push(u.clone());
                    continue;
                }
                Some(u) => {
                    summary.changed.push(b.name.clone());
                    Some(u.clone())
                }
                None => {
                    summary.added.push(b.name.clone());
                    None
                }
            };
            let u = Upstream::new(settings, workers, self.router.signals().clone())?;
            if let Some(previous) = previous {
                // Its tools stay while it is replaced (never "unknown tool").
                u.take_over_from(&previous);
            }
            fresh.push(u.clone());
            list.push(u);
        }
        let kept: Vec<&str> = summary.unchanged.iter().map(String::as_str).collect();
        let retired: Vec<Arc<Upstream>> = old
            .iter()
            .filter(|u| !kept.contains(&u.name()))
            .cloned()
            .collect();
        summary.removed = retired
            .iter()
            .map(|u| u.name().to_string())
            .filter(|n| !summary.changed.contains(n))
            .collect();
        if let Some(spawner) = &*self.spawner.lock().unwrap_or_else(PoisonError::into_inner) {
            for u in &fresh {
                spawner.tasks.spawn(u.clone().monitor(spawner.stop.clone()));
            }
        }
        metrics::gauge!("toolhive_vmcp_backends_discovered").set(list.len() as f64);
        self.router
            .replace(RouteSettings::of(config), Upstreams::new(list));
        futures_util::future::join_all(retired.iter().map(|u| u.retire())).await;
        Ok(summary)
    }

    /// Reloads on SIGHUP and whenever the file changes, until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let Some(path) = self.path.get().cloned() else {
            return;
        };
        let mut hangups = hangups();
        let mut seen = fingerprint(&path);
        loop {
            let why = tokio::select! {
                () = stop.cancelled() => return,
                () = next_hangup(&mut hangups) => "SIGHUP",
                () = tokio::time::sleep(POLL) => {
                    let now = fingerprint(&path);
                    if now == seen {
                        continue;
                    }
                    // Let a writer finish before reading (an editor's save, a copy).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    "file changed"
                }
            };
            seen = fingerprint(&path);
            let _ = self.reload(why).await;
        }
    }

    /// What `/status` says about the configuration.
    pub(crate) fn describe(&self) -> Value {
        let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        json!({
            "file": self.path.get().map(|p| p.display().to_string()),
            "reloads": record.reloads,
            "failedReloads": record.failures,
            "lastReload": record.last,
        })
    }
}

/// Starts the reload metrics (their series exist before the first reload).
pub(crate) fn register_metrics() {
    for result in ["success", "failure"] {
        metrics::counter!("toolhive_vmcp_config_reloads_total", "result" => result).increment(0);
    }
    metrics::gauge!("toolhive_vmcp_config_last_reload_successful").set(1.0);
}

/// The keys read only at start whose values differ between `before` and `after`.
fn needs_restart(before: &VmcpConfig, after: &VmcpConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("name", before.name != after.name);
    differs("listen", before.listen != after.listen);
    differs("allowedHosts", before.allowed_hosts != after.allowed_hosts);
    differs(
        "allowedOrigins",
        before.allowed_origins != after.allowed_origins,
    );
    differs(
        "operational.readTimeout",
        before.read_timeout != after.read_timeout,
    );
    differs(
        "operational.idleTimeout",
        before.idle_timeout != after.idle_timeout,
    );
    differs(
        "operational.sessionIdleTimeout",
        before.session_idle_timeout != after.session_idle_timeout,
    );
    differs(
        "sessionStorage",
        before.session_storage != after.session_storage,
    );
    differs("telemetry", before.telemetry != after.telemetry);
    keys
}

/// What tells a changed file from the one read last: its modification time and length
/// (through symlinks, as Kubernetes swaps a mounted ConfigMap).
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    match hangups {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}
