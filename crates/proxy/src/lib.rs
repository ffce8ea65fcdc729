//! `hale proxy`: a transparent reverse proxy in front of one MCP server that health-checks
//! it with real MCP pings and shuts down after `TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD`
//! consecutive failed checks.
//!
//! ```no_run
//! use hale_proxy::{Exit, Proxy, ProxyConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), hale_proxy::ProxyError> {
//! let (checks, warnings) = hale_proxy::env::from_process_env();
//! for w in &warnings {
//!     eprintln!("warning: {w}");
//! }
//! let config = ProxyConfig::new("http://127.0.0.1:8080/mcp", checks);
//! let proxy = Proxy::bind(config).await?;
//! println!("listening on http://{}", proxy.local_addr());
//! match proxy.run(CancellationToken::new()).await {
//!     Exit::Interrupted => {}
//!     Exit::ServerFailed { reason } => eprintln!("shut down: {reason}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Bodies stream both ways; SSE events are forwarded as they arrive; status codes, bodies
//! and MCP headers pass unchanged (hop-by-hop headers are dropped); upstream connections
//! are pooled; the legacy SSE `endpoint` event is rewritten to point back at the proxy.
//! `/health` answers from the monitor's last result, never with a live check; `/metrics`
//! renders Prometheus text.

mod answer;
mod body;
pub mod env;
mod forward;
mod legacy;
mod monitor;
mod recovery;
mod sse_rewrite;
mod status;
mod traced;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hale_core::CheckLoopConfig;
use hale_mcp::TransportKind;
use http::{Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use hale_core::HostPolicy;
use hale_mcp::codes;

use crate::answer::Said;
use crate::body::{ProxyBody, full};
use crate::forward::{ForwardConfig, Forwarder};
use crate::status::Status;

/// Request bodies larger than this get 413.
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// How a proxy is set up.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The MCP server's endpoint URL (`…/mcp` for streamable HTTP, `…/sse` for legacy SSE).
    pub target: String,
    /// The server's transport, for health checks.
    pub transport: TransportKind,
    /// Where to listen (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// The health-check loop (from the `TOOLHIVE_HEALTH_CHECK_*` variables).
    pub checks: CheckLoopConfig,
    /// How long in-flight requests may take to finish once the proxy shuts down.
    pub drain_timeout: Duration,
    /// Renders `/metrics`; `None` answers 404 there.
    pub metrics: Option<PrometheusHandle>,
    /// Worker threads serving connections (default: one per core).
    pub workers: usize,
    /// How long a request may wait for the server's answer in all (retries of a refused
    /// connection included); `None` (the default): until the proxy gives up on the server.
    pub request_timeout: Option<Duration>,
    /// Host names (besides IP literals and `localhost`) clients may use to reach the
    /// proxy; `*` allows any. DNS-rebinding protection.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the proxy (besides its own and, when listening on
    /// loopback, loopback pages); `*` allows any.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to send a request's headers, or its body; an idle
    /// keep-alive connection is closed after as long.
    pub read_timeout: Duration,
    /// How an `https://` target is reached (`--target-ca-bundle`, `--target-client-cert`,
    /// `--target-client-key`, `--target-server-name`); `None`: Mozilla's roots, no client
    /// certificate.
    pub tls: Option<hale_mcp::Tls>,
    /// Whether a session the server lost (it restarted) is opened again for its client
    /// with the client's own `initialize`, so the client's session survives (default
    /// true; `--no-session-recovery`).
    pub session_recovery: bool,
    /// OpenTelemetry export (`--otel-*`; the `OTEL_*` variables fill in the rest).
    pub telemetry: hale_telemetry::Overrides,
}

impl ProxyConfig {
    /// A proxy for `target` over streamable HTTP, listening on any free loopback port.
    pub fn new(target: &str, checks: CheckLoopConfig) -> Self {
        ProxyConfig {
            target: target.to_string(),
            transport: TransportKind::StreamableHttp,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            checks,
            drain_timeout: Duration::from_secs(10),
            metrics: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            request_timeout: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            read_timeout: Duration::from_secs(30),
            tls: None,
            session_recovery: true,
            telemetry: hale_telemetry::Overrides::default(),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The target URL cannot be proxied.
    #[error("--target {url}: {reason}")]
    Target {
        /// The URL as given.
        url: String,
        /// Why not.
        reason: String,
    },
    /// The health-check settings are unusable.
    #[error("{0}")]
    Checks(#[from] hale_core::ConfigError),
    /// The telemetry settings (`OTEL_*`, `--otel-*`) cannot be used.
    #[error("{0}")]
    Telemetry(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// How a proxy run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The host asked it to stop.
    Interrupted,
    /// The server failed the configured number of consecutive checks; the proxy drained
    /// and stopped. The CLI exits with status 3.
    ServerFailed {
        /// Why, for the log and the operator.
        reason: String,
    },
}

/// A bound, not yet running proxy.
pub struct Proxy {
    config: ProxyConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
    target: Uri,
    checks: hale_core::CheckLoop,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr)
            .field("target", &hale_mcp::redact_url(&self.config.target))
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Checks the configuration and binds the listener.
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let checks =
            hale_core::CheckLoop::new(&config.checks, tokio::time::Instant::now().into_std())?;
        if let Some(settings) = hale_telemetry::Settings::from_env("hale-proxy", &config.telemetry)
            .map_err(ProxyError::Telemetry)?
        {
            hale_telemetry::start(settings, tokio::runtime::Handle::current())
                .map_err(ProxyError::Telemetry)?;
        }
        let bad = |reason: &str| ProxyError::Target {
            url: hale_mcp::redact_url(&config.target),
            reason: reason.to_string(),
        };
        let target: Uri = config
            .target
            .parse()
            .map_err(|e| bad(&format!("not a URL ({e})")))?;
        match target.scheme_str() {
            Some("https") => {}
            Some("http") if config.tls.is_none() => {}
            Some("http") => {
                return Err(bad(
                    "the --target-* TLS settings apply to an https:// target, and this one is http://",
                ));
            }
            _ => return Err(bad("expected an http:// or https:// URL")),
        }
        if target.host().is_none() {
            return Err(bad("the URL has no host"));
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ProxyError::Listen {
            addr: config.listen,
            source,
        })?;
        Ok(Proxy {
            config,
            listener,
            local_addr,
            target,
            checks,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `stop` is cancelled or the server fails its checks.
    pub async fn run(self, stop: CancellationToken) -> Exit {
        let Proxy {
            config,
            listener,
            target,
            checks,
            ..
        } = self;
        let status = Arc::new(Status::new(
            config.transport,
            config.checks.failure_threshold,
        ));
        let inflight = Arc::new(forward::Inflight::default());
        let close_streams = CancellationToken::new();
        let connections = TaskTracker::new();
        let kill_connections = CancellationToken::new();
        let graceful = CancellationToken::new();
        let hosts = HostPolicy::new(
            self_listen_is_loopback(&config),
            &config.allowed_hosts,
            &config.allowed_origins,
        );
        // Exported from the start, so a dashboard shows 0 rather than nothing.
        metrics::counter!("toolhive_proxy_sessions_recovered_total").increment(0);
        let forwarding = ForwardConfig {
            max_body: MAX_REQUEST_BODY,
            retry_delay: config.checks.retry_delay,
            request_timeout: config.request_timeout,
            backend: status.backend.subscribe(),
            inflight: inflight.clone(),
            close_streams: close_streams.clone(),
            legacy: Arc::new(legacy::LegacyStreams::default()),
            read_timeout: config.read_timeout,
            tls: config.tls.clone().unwrap_or_default(),
            sessions: config
                .session_recovery
                .then(|| Arc::new(recovery::Sessions::default())),
        };

        // Thread per core, as nginx does (hale-listen): each worker thread runs a
        // single-threaded runtime with its own upstream pool, and a connection lives on
        // one worker from accept to close, so a request never hops between threads.
        let mut handlers = Vec::new();
        for _ in 0..config.workers.max(1) {
            let forwarder = match Forwarder::new(&target, forwarding.clone()) {
                Ok(f) => f,
                Err(reason) => return Exit::ServerFailed { reason },
            };
            handlers.push(Arc::new(Handler {
                forwarder,
                status: status.clone(),
                metrics: config.metrics.clone(),
                hosts: hosts.clone(),
            }));
        }
        let (graceful_end, kill_end) = (graceful.clone(), kill_connections.clone());
        let workers = hale_listen::Workers::start(
            "hale-proxy",
            handlers.len(),
            |_| {},
            &connections,
            |n| {
                let handler = handlers[n].clone();
                let ends = Ends {
                    graceful: graceful_end.clone(),
                    kill: kill_end.clone(),
                };
                Arc::new(move |stream| {
                    Box::pin(serve_connection(stream, handler.clone(), ends.clone()))
                })
            },
        );
        let workers = match workers {
            Ok(w) => w,
            Err(e) => {
                return Exit::ServerFailed {
                    reason: format!("cannot start a worker thread: {e}"),
                };
            }
        };
        let stop_accepting = CancellationToken::new();
        let accept = tokio::spawn({
            let stop = stop_accepting.clone();
            async move {
                hale_listen::accept(listener, &workers, stop).await;
                workers
            }
        });

        let mut monitor = monitor::Monitor::new(&config, checks, status.clone());
        let exit = tokio::select! {
            () = stop.cancelled() => Exit::Interrupted,
            reason = monitor.run() => Exit::ServerFailed { reason },
        };
        // Shutdown (spec §6): from here every new request is answered by the proxy, and
        // requests still waiting for a given-up server are answered at once.
        let drain = match &exit {
            Exit::ServerFailed { reason } => {
                tracing::error!(target = %hale_mcp::redact_url(&config.target), %reason, "shutting down the proxy");
                status.shutting_down(Some(reason.clone()));
                // Nothing more will come from a server that failed its checks: answers
                // still streaming from it get the ping timeout. Requests waiting for it
                // are answered by the proxy at once, but they need their threads to run:
                // at least a second for that, on a loaded machine.
                config
                    .drain_timeout
                    .min(config.checks.ping_timeout.max(Duration::from_secs(1)))
            }
            Exit::Interrupted => {
                tracing::info!(timeout = ?config.drain_timeout, "stopping: no new connections; requests in flight may finish");
                status.shutting_down(None);
                config.drain_timeout
            }
        };
        // Stop accepting; idle keep-alive connections close now, busy ones after their
        // answer; standalone SSE streams end.
        stop_accepting.cancel();
        let workers = accept.await.ok();
        graceful.cancel();
        if inflight.count() > 0 {
            tracing::info!(inflight = inflight.count(), timeout = ?drain, "draining requests in flight");
        }
        if tokio::time::timeout(drain, inflight.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                left = inflight.count(),
                "drain timeout passed; closing the remaining requests"
            );
        }
        // Legacy SSE answers (the proxy's own among them) travel on the standalone
        // streams: they end after the drain, with what is ready sent.
        close_streams.cancel();
        monitor.close().await;
        kill_connections.cancel();
        connections.close();
        connections.wait().await;
        if let Some(workers) = workers {
            workers.join().await;
        }
        // The last spans, within the drain (a collector that is down costs at most that).
        if let Some(telemetry) = hale_telemetry::get() {
            let within = config.drain_timeout.min(Duration::from_secs(3));
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown(within)).await;
        }
        exit
    }
}

fn self_listen_is_loopback(config: &ProxyConfig) -> bool {
    config.listen.ip().is_loopback()
}

/// How a worker's connections are ended: gracefully (idle ones close, busy ones after
/// their answer), then for good.
#[derive(Clone)]
struct Ends {
    graceful: CancellationToken,
    kill: CancellationToken,
}

/// One client connection, on its worker: HTTP/1.1 with a header read timeout, its own
/// upstream connection, ended gracefully then for good as the proxy stops.
async fn serve_connection(stream: tokio::net::TcpStream, handler: Arc<Handler>, ends: Ends) {
    let Ends { graceful, kill } = ends;
    let upstream = Arc::new(forward::Upstream::default());
    let read_timeout = handler.forwarder.config.read_timeout;
    let peer = stream.peer_addr().ok().map(|a| traced::Peer(a.ip()));
    let service = service_fn(move |mut req: Request<Incoming>| {
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer); // the span's client.address
        }
        let (handler, upstream) = (handler.clone(), upstream.clone());
        async move { Ok::<_, Infallible>(handler.handle(req, &upstream).await) }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(read_timeout)
        // MCP messages are small: one flattened write beats an iovec
        // (about 6 % less CPU per request, measured against the bench).
        .writev(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = graceful.cancelled() => {}
        () = kill.cancelled() => return,
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        () = kill.cancelled() => {}
    }
}

struct Handler {
    forwarder: Forwarder,
    status: Arc<Status>,
    metrics: Option<PrometheusHandle>,
    hosts: HostPolicy,
}

impl Handler {
    /// Answers one request. CORS for a browser page on an allowed origin: the server's
    /// own, when it has any (a preflight it answers with `Access-Control-Allow-Origin`
    /// passes through untouched, as does an answer carrying it); where it has none
    /// (a preflight it refuses or answers without it, answers without it), hale's.
    async fn handle(
        &self,
        req: Request<Incoming>,
        upstream: &forward::Upstream,
    ) -> Response<ProxyBody> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        // Only an origin the policy allows gets CORS (another is refused 403 below).
        let origin = header(header::ORIGIN)
            .filter(|o| self.hosts.check(header(header::HOST), Some(o)).is_ok())
            .map(str::to_string);
        let requested = header(header::ACCESS_CONTROL_REQUEST_HEADERS).map(str::to_string);
        let preflight = req.method() == Method::OPTIONS;
        let mut response = self.answer(req, upstream).await;
        let Some(origin) = origin else {
            return response;
        };
        if response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            return response;
        }
        if preflight {
            response = Response::new(full(bytes::Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            with_headers(
                &mut response,
                hale_core::cors::preflight(&origin, requested.as_deref()),
            );
        } else {
            with_headers(&mut response, hale_core::cors::response(&origin));
        }
        response
    }

    /// Answers a request (no CORS yet): `Host` and `Origin` checked, then hale's own
    /// endpoints or the server's.
    async fn answer(
        &self,
        req: Request<Incoming>,
        upstream: &forward::Upstream,
    ) -> Response<ProxyBody> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        if let Err(refusal) = self
            .hosts
            .check(header(header::HOST), header(header::ORIGIN))
        {
            tracing::warn!(%refusal, path = req.uri().path(), "refused a request (DNS-rebinding protection)");
            return answer::rpc_error(
                StatusCode::FORBIDDEN,
                &Said::new(codes::REFUSED, refusal.to_string()),
            );
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/health") => {
                let (code, body) = self.status.health();
                let mut response = Response::new(full(body.to_string()));
                *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            (&Method::GET, "/metrics") => match &self.metrics {
                Some(handle) => {
                    let mut response = Response::new(full(handle.render()));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    response
                }
                None => answer::rpc_error(
                    StatusCode::NOT_FOUND,
                    &Said::new(codes::UNKNOWN_NAME, "metrics are not enabled"),
                ),
            },
            _ => self.forwarder.forward(req, upstream).await,
        }
    }
}

/// Adds `headers` to `r` (`Vary` appended to what the server said).
fn with_headers(r: &mut Response<ProxyBody>, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            let name = http::HeaderName::from_static(name);
            if name == header::VARY {
                r.headers_mut().append(name, value);
            } else {
                r.headers_mut().insert(name, value);
            }
        }
    }
}

/// Every metric the proxy exports (spec §7.3, and the failure threshold for alerts). The operations docs, the alert rules and
/// the dashboard may name only these; a test scrapes `/metrics` for each of them.
pub const METRICS: &[&str] = &[
    "toolhive_proxy_requests_total",
    "toolhive_proxy_request_duration_seconds",
    "toolhive_proxy_health_checks_total",
    "toolhive_proxy_health_consecutive_failures",
    "toolhive_proxy_health_failure_threshold",
    "toolhive_proxy_backend_up",
    "toolhive_proxy_active_sse_streams",
    "toolhive_proxy_sessions_recovered_total",
];

/// Histogram buckets for every duration metric: 1 ms to 60 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];
