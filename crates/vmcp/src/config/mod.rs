//! `vmcp.yaml`: ToolHive's vMCP keys (camelCase, Go durations), read strictly.
//!
//! Bad configuration never starts a half-working server: an unknown key, a bad duration,
//! a threshold below 1, a health-check timeout not below the interval, a duplicate or
//! unknown backend name, a bad URL, `manual` conflict resolution without overrides, each
//! stops start-up with one [`ConfigFileError`] naming the file, the key path, the line
//! when the parser knows it, and what would be accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hale_core::{BreakerConfig, HealthConfig, parse_go_duration};
use hale_mcp::{ProbeMethod, TransportKind};
use serde::Deserialize;
use serde_saphyr::Spanned;

mod auth;
mod breaker;
mod check;
mod stdio;
mod storage;
mod telemetry;
mod tls;

pub use auth::{IncomingAuth, OidcSettings, StaticSettings};
use auth::{RawIncoming, RawOutgoing};
use check::Checker;
pub use check::ConfigFileError;
pub use hale_mcp::FailureCodes;
pub use storage::{RedisSettings, SessionStorage};

/// How tool-name collisions between backends are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConflictResolution {
    /// Every tool is renamed `format` with `{workload}` replaced by the backend name.
    Prefix {
        /// E.g. `{workload}_`.
        format: String,
    },
    /// The first backend in `order` that offers a name keeps it; the others drop it.
    Priority {
        /// Backend names, most important first.
        order: Vec<String>,
    },
    /// Collisions must be resolved by `overrides`; an unresolved one is an error.
    Manual,
}

/// A renamed or re-described tool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolOverride {
    /// The name clients see.
    pub name: Option<String>,
    /// The description clients see.
    pub description: Option<String>,
}

/// Per-backend tool policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    /// Only these tools are offered (all when `None`).
    pub filter: Option<Vec<String>>,
    /// Renames and descriptions, by the backend's tool name.
    pub overrides: BTreeMap<String, ToolOverride>,
}

/// What happens when a backend fails during a fan-out (list requests, initialize).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartialFailureMode {
    /// The request fails, naming each failed backend.
    Fail,
    /// The request returns what the others gave, with details in `_meta`.
    BestEffort,
}

/// One backend MCP server.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Its name (`workload` in ToolHive's terms).
    pub name: String,
    /// Its MCP endpoint URL (empty for a stdio backend, whose URL is the loopback port
    /// hale serves it on).
    pub url: String,
    /// Its transport.
    pub transport: TransportKind,
    /// Headers and a bearer token its requests and probes carry (`headers`, `auth`).
    pub credentials: hale_mcp::Credentials,
    /// How an `https://` backend is reached (`tls`); `None`: Mozilla's roots, no client
    /// certificate.
    pub tls: Option<hale_mcp::Tls>,
    /// Which JSON-RPC error codes in its answers count as failures (`failureCodes`).
    pub failure_codes: FailureCodes,
    /// A stdio server hale launches (`command`, `args`, `env`, `cwd`, `isolation`)
    /// instead of a URL.
    pub stdio: Option<hale_stdio::StdioConfig>,
}

/// A checked vMCP configuration.
#[derive(Clone, Debug)]
pub struct VmcpConfig {
    /// The server's name (`serverInfo.name`, `/status`).
    pub name: String,
    /// Where to serve MCP, status and metrics.
    pub listen: SocketAddr,
    /// The backends, in configuration order.
    pub backends: Vec<BackendConfig>,
    /// Collision handling.
    pub conflict_resolution: ConflictResolution,
    /// Tool policies by backend name.
    pub tools: BTreeMap<String, ToolPolicy>,
    /// Request timeout for backends without their own.
    pub default_timeout: Duration,
    /// Request timeouts by backend name.
    pub timeouts: BTreeMap<String, Duration>,
    /// Health checks.
    pub health: HealthConfig,
    /// What a health check sends.
    pub health_check_method: ProbeMethod,
    /// Fan-out failure handling.
    pub partial_failure_mode: PartialFailureMode,
    /// The breakers' settings.
    pub breaker: BreakerConfig,
    /// Whether breakers refuse calls (`false`: they only track and report).
    pub breaker_enabled: bool,
    /// The share of a retry each request to a backend earns (`failureHandling.retryBudget`,
    /// default 20 %; 0 turns retries off).
    pub retry_budget: f64,
    /// `circuitBreaker.perTool` (default true): each tool has a breaker of its own
    /// inside its backend's.
    pub breaker_per_tool: bool,
    /// Host names (besides IP literals and `localhost`) clients may use; `*`: any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call (besides same-origin, and loopback pages on a
    /// loopback listener); `*`: any.
    pub allowed_origins: Vec<String>,
    /// A client session unused this long is ended, with its backend sessions.
    pub session_idle_timeout: Duration,
    /// Backend sessions open at once per backend (one per client session using it).
    pub max_sessions_per_backend: u32,
    /// Client sessions held at once (`operational.maxClientSessions`); at the limit the
    /// idlest makes room.
    pub max_client_sessions: u32,
    /// Client sessions one caller may hold at once (`operational.maxSessionsPerIdentity`;
    /// anonymous callers: one identity per client address).
    pub max_sessions_per_identity: u32,
    /// Tools (and likewise resources, templates, prompts) one backend may list; a backend
    /// that lists more is not used, with the reason in `/status`.
    pub max_tools_per_backend: u32,
    /// How long a client may take to send a request's headers, or its body.
    pub read_timeout: Duration,
    /// A client connection with nothing asked for this long is closed.
    pub idle_timeout: Duration,
    /// Who may call `/mcp` (`incomingAuth`); `None`: not written (loopback only).
    pub incoming_auth: Option<IncomingAuth>,
    /// Who may read `/status`, `/api/backends/health` and `/metrics`
    /// (`operational.statusAuth`); `None`: the same as `/mcp`.
    pub status_auth: Option<IncomingAuth>,
    /// Who may use the admin API (`operational.admin`); `None`: it is off.
    pub admin: Option<IncomingAuth>,
    /// Below this share of routable backends (0.0–1.0), nothing is withdrawn
    /// (`failureHandling.panicThreshold`, default 50 %; 0 turns it off).
    pub panic_threshold: f64,
    /// How long an unroutable backend's tools stay advertised before they are withdrawn
    /// (`failureHandling.withdrawalGracePeriod`, default 0).
    pub withdrawal_grace: Duration,
    /// Whether a tool result with `isError: true` counts as a failure for the breaker
    /// (`failureHandling.toolErrorsAreFailures`, default false).
    pub tool_errors_are_failures: bool,
    /// Where client sessions live beyond this process (`sessionStorage`).
    pub session_storage: SessionStorage,
    /// OpenTelemetry export (`telemetry`; the `OTEL_*` variables fill in the rest).
    pub telemetry: hale_telemetry::Overrides,
}

impl VmcpConfig {
    /// The request timeout for `backend`.
    pub fn timeout_for(&self, backend: &str) -> Duration {
        self.timeouts
            .get(backend)
            .copied()
            .unwrap_or(self.default_timeout)
    }

    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigFileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            file: file.clone(),
            key: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_yaml(&file, &text)
    }

    /// Parses and checks configuration `text` that came from `file`.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, ConfigFileError> {
        let mut path = String::new();
        let raw: Result<Raw, _> = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        });
        let raw = raw.map_err(|e| ConfigFileError {
            file: file.to_string(),
            key: if path == "." {
                String::new()
            } else {
                // `Spanned` values add a `.value` step the file does not have.
                path.strip_suffix(".value").unwrap_or(&path).to_string()
            },
            line: e.location().map(|l| l.line()),
            message: plain(&first_line(&e.to_string())),
        })?;
        check(file, raw)
    }

    /// A configuration from `--backend NAME=URL[@sse]` flags, with every other setting at
    /// its default.
    pub fn from_flags(
        name: &str,
        listen: SocketAddr,
        backends: &[String],
    ) -> Result<Self, ConfigFileError> {
        let mut yaml = format!(
            "name: {name:?}\nlisten: {:?}\nbackends:\n",
            listen.to_string()
        );
        for (i, flag) in backends.iter().enumerate() {
            let (backend, rest) = flag.split_once('=').ok_or_else(|| ConfigFileError {
                file: "--backend".into(),
                key: format!("backends[{i}]"),
                line: None,
                message: format!("{flag:?}: expected NAME=URL or NAME=URL@sse"),
            })?;
            let (url, transport) = match rest.strip_suffix("@sse") {
                Some(url) => (url, "sse"),
                None => (rest, "streamable-http"),
            };
            yaml.push_str(&format!(
                "  - {{name: {backend:?}, url: {url:?}, transport: {transport}}}\n"
            ));
        }
        Self::from_yaml("--backend", &yaml).map_err(|mut e| {
            e.line = None;
            e
        })
    }
}

/// The parser's words for a wrong shape, in the words of the file.
fn plain(message: &str) -> String {
    match message {
        "expected mapping start" => {
            "expected a mapping ({key: value, …} or one `key: value` per line)".into()
        }
        "expected sequence start" => {
            "expected a list (such as [a, b] or one `- item` per line)".into()
        }
        m if m.starts_with("data did not match any variant of untagged enum OneOrMany") => {
            "expected a string or a list of strings".into()
        }
        m => m.to_string(),
    }
}

/// The parser's message without its own decorations (we print the file and line).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let without_position = line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": ").map(|(_, message)| message));
    without_position.unwrap_or(line).to_string()
}

// --- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    name: Option<String>,
    listen: Option<Spanned<String>>,
    #[serde(default)]
    backends: Vec<RawBackend>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    incoming_auth: Option<RawIncoming>,
    #[serde(default)]
    aggregation: RawAggregation,
    #[serde(default)]
    operational: RawOperational,
    session_storage: Option<Spanned<storage::RawStorage>>,
    telemetry: Option<telemetry::RawTelemetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBackend {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    args: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    cwd: Option<Spanned<String>>,
    isolation: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    auth: Option<RawOutgoing>,
    tls: Option<Spanned<tls::RawTls>>,
    failure_codes: Option<Spanned<breaker::RawFailureCodes>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAggregation {
    conflict_resolution: Option<Spanned<String>>,
    #[serde(default)]
    conflict_resolution_config: RawConflictConfig,
    #[serde(default)]
    tools: Vec<RawToolPolicy>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConflictConfig {
    prefix_format: Option<Spanned<String>>,
    priority_order: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawToolPolicy {
    workload: Spanned<String>,
    filter: Option<Vec<String>>,
    #[serde(default)]
    overrides: BTreeMap<String, RawOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOverride {
    name: Option<String>,
    description: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOperational {
    session_idle_timeout: Option<Spanned<String>>,
    max_sessions_per_backend: Option<Spanned<u32>>,
    max_client_sessions: Option<Spanned<u32>>,
    max_sessions_per_identity: Option<Spanned<u32>>,
    max_tools_per_backend: Option<Spanned<u32>>,
    read_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    status_auth: Option<RawIncoming>,
    admin: Option<RawIncoming>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    failure_handling: RawFailureHandling,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTimeouts {
    default: Option<Spanned<String>>,
    #[serde(default)]
    per_workload: BTreeMap<String, Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFailureHandling {
    health_check_interval: Option<Spanned<String>>,
    health_check_timeout: Option<Spanned<String>>,
    health_check_method: Option<Spanned<String>>,
    unhealthy_threshold: Option<Spanned<u32>>,
    healthy_threshold: Option<Spanned<u32>>,
    degraded_latency: Option<Spanned<String>>,
    partial_failure_mode: Option<Spanned<String>>,
    panic_threshold: Option<Spanned<check::RawPercent>>,
    withdrawal_grace_period: Option<Spanned<String>>,
    tool_errors_are_failures: Option<bool>,
    retry_budget: Option<Spanned<check::RawPercent>>,
    #[serde(default)]
    circuit_breaker: breaker::RawBreaker,
}

fn check(file: &str, raw: Raw) -> Result<VmcpConfig, ConfigFileError> {
    let c = Checker::new(file);
    let listen = match raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 4483)),
        Some(l) => match l.value.parse() {
            Ok(addr) => addr,
            Err(_) => {
                return c.error(
                    "listen",
                    Some(l.referenced.line()),
                    format!("expected IP:PORT such as 127.0.0.1:4483, got {:?}", l.value),
                );
            }
        },
    };

    let mut backends = Vec::new();
    let mut names = BTreeSet::new();
    for (i, b) in raw.backends.into_iter().enumerate() {
        let key = |field: &str| format!("backends[{i}].{field}");
        let name = b.name.value.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return c.error(
                &key("name"),
                Some(b.name.referenced.line()),
                format!(
                    "expected a name of letters, digits, '-', '_' or '.', got {:?}",
                    b.name.value
                ),
            );
        }
        if !names.insert(name.clone()) {
            return c.error(
                &key("name"),
                Some(b.name.referenced.line()),
                format!("duplicate backend name {name:?}: names must be unique"),
            );
        }
        let line = Some(b.name.referenced.line());
        let url = match (b.url, b.command) {
            (Some(_), Some(_)) => {
                return c.error(
                    &format!("backends[{i}]"),
                    line,
                    "give either url (an HTTP server) or command (a stdio server hale runs), not both",
                );
            }
            (None, None) => {
                return c.error(
                    &key("url"),
                    line,
                    "required: url (an HTTP server), or command (a stdio server hale runs)",
                );
            }
            (None, Some(command)) => {
                // Keys that are about reaching a URL mean nothing for a process.
                let http_only = [
                    (
                        "transport",
                        b.transport.as_ref().map(|t| t.referenced.line()),
                    ),
                    ("tls", b.tls.as_ref().map(|t| t.referenced.line())),
                    ("auth", b.auth.is_some().then_some(b.name.referenced.line())),
                    (
                        "headers",
                        (!b.headers.is_empty()).then_some(b.name.referenced.line()),
                    ),
                ];
                if let Some((field, at)) = http_only.iter().find(|(_, at)| at.is_some()) {
                    return c.error(
                        &key(field),
                        *at,
                        "is for backends with a url; a stdio backend (command) takes args, env, cwd and isolation",
                    );
                }
                let stdio = stdio::stdio(
                    &c,
                    &format!("backends[{i}]"),
                    stdio::RawStdio {
                        command,
                        args: b.args.map(|a| a.value).unwrap_or_default(),
                        env: b.env.map(|e| e.value).unwrap_or_default(),
                        cwd: b.cwd,
                        isolation: b.isolation,
                    },
                )?;
                backends.push(BackendConfig {
                    failure_codes: breaker::failure_codes(
                        &c,
                        &format!("backends[{i}].failureCodes"),
                        b.failure_codes,
                    )?,
                    name,
                    url: String::new(),
                    transport: TransportKind::StreamableHttp,
                    credentials: hale_mcp::Credentials::default(),
                    tls: None,
                    stdio: Some(stdio),
                });
                continue;
            }
            (Some(url), None) => url,
        };
        let stdio_only = [
            ("args", b.args.as_ref().map(|a| a.referenced.line())),
            ("env", b.env.as_ref().map(|e| e.referenced.line())),
            ("cwd", b.cwd.as_ref().map(|c| c.referenced.line())),
            (
                "isolation",
                b.isolation.as_ref().map(|i| i.referenced.line()),
            ),
        ];
        if let Some((field, at)) = stdio_only.iter().find(|(_, at)| at.is_some()) {
            return c.error(
                &key(field),
                *at,
                "is for stdio backends (command); this one has a url",
            );
        }
        if let Err(e) = check_url(&url.value) {
            return c.error(
                &key("url"),
                Some(url.referenced.line()),
                format!("{:?}: {e}", hale_mcp::redact_url(&url.value)),
            );
        }
        let transport = match &b.transport {
            None => TransportKind::StreamableHttp,
            Some(t) => match t.value.parse() {
                Ok(t) => t,
                Err(e) => return c.error(&key("transport"), Some(t.referenced.line()), e),
            },
        };
        let credentials = auth::outgoing(&c, &format!("backends[{i}]"), b.headers, b.auth)?;
        let tls = tls::tls(&c, &format!("backends[{i}]"), &url.value, b.tls)?;
        backends.push(BackendConfig {
            failure_codes: breaker::failure_codes(
                &c,
                &format!("backends[{i}].failureCodes"),
                b.failure_codes,
            )?,
            name,
            url: url.value.trim().to_string(),
            transport,
            credentials,
            tls,
            stdio: None,
        });
    }
    let known = |n: &str| names.contains(n);

    let session_storage = storage::storage(&c, raw.session_storage)?;
    let agg = raw.aggregation;
    let strategy = agg
        .conflict_resolution
        .as_ref()
        .map_or("prefix", |s| s.value.as_str())
        .to_string();
    let strategy_line = agg
        .conflict_resolution
        .as_ref()
        .map(|s| s.referenced.line());
    let conflict_resolution = match strategy.as_str() {
        "prefix" => {
            let format = agg.conflict_resolution_config.prefix_format.map_or_else(|| Ok("{workload}_".to_string()), |f| {
                if f.value.contains("{workload}") {
                    Ok(f.value)
                } else {
                    c.error("aggregation.conflictResolutionConfig.prefixFormat", Some(f.referenced.line()),
                        format!("expected a format containing {{workload}}, such as \"{{workload}}_\", got {:?}", f.value))
                }
            })?;
            ConflictResolution::Prefix { format }
        }
        "priority" => {
            let Some(order) = agg.conflict_resolution_config.priority_order else {
                return c.error("aggregation.conflictResolutionConfig.priorityOrder", strategy_line,
                    "conflictResolution priority needs priorityOrder: a list of backend names, most important first");
            };
            for name in &order.value {
                if !known(name) {
                    return c.error(
                        "aggregation.conflictResolutionConfig.priorityOrder",
                        Some(order.referenced.line()),
                        format!("{name:?} is not a configured backend"),
                    );
                }
            }
            ConflictResolution::Priority { order: order.value }
        }
        "manual" => ConflictResolution::Manual,
        other => {
            return c.error(
                "aggregation.conflictResolution",
                strategy_line,
                format!("expected prefix, priority or manual, got {other:?}"),
            );
        }
    };

    let mut tools = BTreeMap::new();
    for (i, policy) in agg.tools.into_iter().enumerate() {
        let workload = policy.workload.value.clone();
        if !known(&workload) {
            return c.error(
                &format!("aggregation.tools[{i}].workload"),
                Some(policy.workload.referenced.line()),
                format!("{workload:?} is not a configured backend"),
            );
        }
        let overrides = policy
            .overrides
            .into_iter()
            .map(|(tool, o)| {
                (
                    tool,
                    ToolOverride {
                        name: o.name,
                        description: o.description,
                    },
                )
            })
            .collect();
        if tools
            .insert(
                workload.clone(),
                ToolPolicy {
                    filter: policy.filter,
                    overrides,
                },
            )
            .is_some()
        {
            return c.error(
                &format!("aggregation.tools[{i}].workload"),
                Some(policy.workload.referenced.line()),
                format!("{workload:?} has two tool policies; merge them into one"),
            );
        }
    }
    if conflict_resolution == ConflictResolution::Manual
        && tools.values().all(|p| p.overrides.is_empty())
    {
        return c.error("aggregation.tools", strategy_line,
            "conflictResolution manual resolves collisions only through overrides, and none are configured: add aggregation.tools[].overrides or use prefix");
    }

    let op = raw.operational;
    let (default_timeout, _) = c.duration(
        "operational.timeouts.default",
        op.timeouts.default,
        Duration::from_secs(30),
    )?;
    let mut timeouts = BTreeMap::new();
    for (backend, value) in op.timeouts.per_workload {
        let key = format!("operational.timeouts.perWorkload.{backend}");
        let line = value.referenced.line();
        if !known(&backend) {
            return c.error(
                &key,
                Some(line),
                format!("{backend:?} is not a configured backend"),
            );
        }
        let (d, _) = c.duration(&key, Some(value), default_timeout)?;
        timeouts.insert(backend, d);
    }

    let (session_idle_timeout, _) = c.duration(
        "operational.sessionIdleTimeout",
        op.session_idle_timeout,
        Duration::from_secs(30 * 60),
    )?;
    let (max_sessions_per_backend, _) = c.count(
        "operational.maxSessionsPerBackend",
        op.max_sessions_per_backend,
        1000,
    )?;
    // A stdio backend with one process per session has as many processes at most.
    for b in &mut backends {
        if let Some(stdio) = &mut b.stdio {
            stdio.max_sessions = max_sessions_per_backend as usize;
        }
    }

    let (read_timeout, _) = c.duration(
        "operational.readTimeout",
        op.read_timeout,
        Duration::from_secs(30),
    )?;
    let (idle_timeout, _) = c.duration(
        "operational.idleTimeout",
        op.idle_timeout,
        Duration::from_secs(120),
    )?;
    let (max_tools_per_backend, _) = c.count(
        "operational.maxToolsPerBackend",
        op.max_tools_per_backend,
        1000,
    )?;
    let (max_client_sessions, _) = c.count(
        "operational.maxClientSessions",
        op.max_client_sessions,
        10_000,
    )?;
    let (max_sessions_per_identity, _) = c.count(
        "operational.maxSessionsPerIdentity",
        op.max_sessions_per_identity,
        1000,
    )?;

    let fh = op.failure_handling;
    let base = "operational.failureHandling";
    let defaults = HealthConfig::default();
    let (check_interval, interval_line) = c.duration(
        &format!("{base}.healthCheckInterval"),
        fh.health_check_interval,
        defaults.check_interval,
    )?;
    let (check_timeout, timeout_line) = c.duration(
        &format!("{base}.healthCheckTimeout"),
        fh.health_check_timeout,
        defaults.check_timeout,
    )?;
    if check_timeout >= check_interval {
        return c.error(
            &format!("{base}.healthCheckTimeout"),
            timeout_line.or(interval_line),
            format!(
                "expected less than healthCheckInterval ({check_interval:?}), got {check_timeout:?}"
            ),
        );
    }
    let (unhealthy_threshold, _) = c.count(
        &format!("{base}.unhealthyThreshold"),
        fh.unhealthy_threshold,
        defaults.unhealthy_threshold,
    )?;
    let (healthy_threshold, _) = c.count(
        &format!("{base}.healthyThreshold"),
        fh.healthy_threshold,
        defaults.healthy_threshold,
    )?;
    let (degraded_latency, _) = c.duration(
        &format!("{base}.degradedLatency"),
        fh.degraded_latency,
        defaults.degraded_latency,
    )?;
    let health_check_method = match fh.health_check_method {
        None => ProbeMethod::Ping,
        Some(m) => match m.value.parse() {
            Ok(m) => m,
            Err(e) => {
                return c.error(
                    &format!("{base}.healthCheckMethod"),
                    Some(m.referenced.line()),
                    e,
                );
            }
        },
    };
    let partial_failure_mode = match fh
        .partial_failure_mode
        .as_ref()
        .map(|m| (m.value.as_str(), m.referenced.line()))
    {
        None | Some(("fail", _)) => PartialFailureMode::Fail,
        Some(("best_effort", _)) => PartialFailureMode::BestEffort,
        Some((other, line)) => {
            return c.error(
                &format!("{base}.partialFailureMode"),
                Some(line),
                format!("expected fail or best_effort, got {other:?}"),
            );
        }
    };

    let panic_threshold = c.percent(
        &format!("{base}.panicThreshold"),
        fh.panic_threshold,
        0.5,
        "expected a share of backends from 0% to 100%, such as 50% (0% turns panic mode off)",
        true,
    )?;
    let retry_budget = c.percent(
        &format!("{base}.retryBudget"),
        fh.retry_budget,
        0.2,
        "expected a share of requests from 0% to 100%, such as 20% (0% turns retries off)",
        true,
    )?;
    let withdrawal_grace = match fh.withdrawal_grace_period {
        None => Duration::ZERO,
        Some(g) => match parse_go_duration(g.value.trim()) {
            Ok(d) => d,
            Err(e) => {
                return c.error(
                    &format!("{base}.withdrawalGracePeriod"),
                    Some(g.referenced.line()),
                    e.to_string(),
                );
            }
        },
    };

    let breaker = breaker::breaker(&c, &format!("{base}.circuitBreaker"), fh.circuit_breaker)?;
    let health = HealthConfig {
        check_interval,
        check_timeout,
        unhealthy_threshold,
        healthy_threshold,
        degraded_latency,
    };
    // hale-core re-checks every rule; a failure here would be a gap above, reported as such.
    if let Err(e) = health.validate().and(breaker.config.validate()) {
        return c.error(
            &format!(
                "operational.failureHandling.{}",
                e.key().trim_start_matches("circuitBreaker.")
            ),
            None,
            e.to_string(),
        );
    }
    // Last, so that a mistake elsewhere in a file without backends is named first.
    if backends.is_empty() {
        return c.error(
            "backends",
            None,
            "expected at least one backend: a list of {name, url[, transport]} (an empty vMCP serves nothing)",
        );
    }
    let incoming_auth = match raw.incoming_auth {
        None => None,
        Some(r) => Some(auth::incoming(&c, "incomingAuth", r)?),
    };
    let status_auth = match op.status_auth {
        None => None,
        Some(r) => Some(auth::incoming(&c, "operational.statusAuth", r)?),
    };
    let admin = match op.admin {
        None => None,
        Some(r) => Some(auth::incoming(&c, "operational.admin", r)?),
    };
    Ok(VmcpConfig {
        name: raw.name.unwrap_or_else(|| "vmcp".to_string()),
        listen,
        backends,
        conflict_resolution,
        tools,
        default_timeout,
        timeouts,
        health,
        health_check_method,
        partial_failure_mode,
        breaker: breaker.config,
        breaker_enabled: breaker.enabled,
        breaker_per_tool: breaker.per_tool,
        retry_budget,
        allowed_hosts: raw.allowed_hosts.unwrap_or_default(),
        allowed_origins: raw.allowed_origins.unwrap_or_default(),
        session_idle_timeout,
        max_sessions_per_backend,
        max_client_sessions,
        max_sessions_per_identity,
        max_tools_per_backend,
        read_timeout,
        idle_timeout,
        incoming_auth,
        status_auth,
        admin,
        panic_threshold,
        withdrawal_grace,
        tool_errors_are_failures: fh.tool_errors_are_failures.unwrap_or(false),
        session_storage,
        telemetry: match raw.telemetry {
            Some(t) => telemetry::telemetry(&c, t)?,
            None => hale_telemetry::Overrides::default(),
        },
    })
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.trim().parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("expected an http:// or https:// URL".into()),
    }
    if uri.host().is_none() {
        return Err("the URL has no host".into());
    }
    Ok(())
}
