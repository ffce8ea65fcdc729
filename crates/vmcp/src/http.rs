//! The vMCP's listener: connections (with read and idle timeouts), `Host`/`Origin`
//! checks on every endpoint, `/mcp` ([`crate::edge`]) and the status endpoints, and the
//! drain at shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hale_core::HostPolicy;
use hale_mcp::codes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Gate, METADATA_PATH, Reached};
use crate::body::{Body, full, json_response};
use crate::config::{IncomingAuth, VmcpConfig};
use crate::edge::{self, Edge, EdgeSettings};
use crate::message::RpcError;
use crate::reload::{ReloadError, ReloadSummary, Reloader, Spawner};
use crate::route::{RouteSettings, Router, Upstreams};
use crate::status;
use crate::upstream::{Settings, Signals, Upstream};

/// Why the vMCP could not start.
#[derive(Debug, thiserror::Error)]
pub enum VmcpError {
    /// The health or breaker settings are unusable.
    #[error("{0}")]
    Config(#[from] hale_core::ConfigError),
    /// A non-loopback listen address with no `incomingAuth`: anyone who reaches the
    /// port could call every tool.
    #[error(
        "listening on {addr}, which is not a loopback address, needs incomingAuth in the configuration: {{type: oidc, issuer, audience}} or {{type: static, tokensFile}}; to let anyone who reaches the port call every tool, write incomingAuth: {{type: anonymous}} (with --backend flags, or in hale demo: --anonymous)"
    )]
    Unprotected {
        /// The address.
        addr: SocketAddr,
    },
    /// The authentication settings cannot be used (an unreadable `caFile`, say).
    #[error("{0}")]
    Auth(String),
    /// The telemetry settings (`telemetry`, `OTEL_*`) cannot be used.
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

/// A bound vMCP, not yet serving.
#[derive(Debug)]
pub struct Vmcp {
    config: VmcpConfig,
    edge: Arc<Edge>,
    reloader: Arc<Reloader>,
    gate: Gate,
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    drain_timeout: Duration,
    workers: usize,
}

impl Vmcp {
    /// Builds the backends' state and binds the listener.
    pub async fn bind(
        config: VmcpConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, VmcpError> {
        let addr = config.listen;
        if !addr.ip().is_loopback() {
            match &config.incoming_auth {
                None => return Err(VmcpError::Unprotected { addr }),
                Some(IncomingAuth::Anonymous) => tracing::warn!(
                    %addr,
                    "incomingAuth is anonymous on a non-loopback address: anyone who reaches the port may call every tool"
                ),
                Some(_) => {}
            }
        }
        if !addr.ip().is_loopback() && matches!(config.admin, Some(IncomingAuth::Anonymous)) {
            return Err(VmcpError::Auth(format!(
                "operational.admin: anonymous admin is allowed only on a loopback listen address, and {addr} is not one: use {{type: static, tokensFile}} or {{type: oidc, …, requiredScopes}}"
            )));
        }
        let gate = Gate::new(&config).map_err(VmcpError::Auth)?;
        if let Some(settings) = hale_telemetry::Settings::from_env("hale-vmcp", &config.telemetry)
            .map_err(VmcpError::Telemetry)?
        {
            hale_telemetry::start(settings, tokio::runtime::Handle::current())
                .map_err(VmcpError::Telemetry)?;
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let signals = Arc::new(Signals::default());
        let mut upstreams = Vec::new();
        for b in &config.backends {
            upstreams.push(Upstream::new(
                Settings::of(&config, b),
                workers,
                signals.clone(),
            )?);
        }
        let router = Arc::new(Router::new(
            RouteSettings::of(&config),
            Upstreams::new(upstreams),
            signals,
        ));
        let reloader = Arc::new(Reloader::new(router.clone(), config.clone()));
        let mut edge = Edge::new(EdgeSettings::of(&config), router);
        edge.private_answers = gate.authenticates();
        if let crate::config::SessionStorage::Redis(settings) = &config.session_storage {
            let store =
                crate::store::RedisStore::new(settings.clone(), config.session_idle_timeout)
                    .map_err(VmcpError::Auth)?;
            edge.store = Some(store);
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| VmcpError::Listen { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| VmcpError::Listen { addr, source })?;
        Ok(Vmcp {
            config,
            edge: Arc::new(edge),
            reloader,
            gate,
            listener,
            local_addr,
            metrics,
            drain_timeout: Duration::from_secs(10),
            workers,
        })
    }

    /// The file the configuration was read from: it is read again on SIGHUP and when it
    /// changes, and applied without a restart (see [`Handle::reload`]).
    #[must_use]
    pub fn with_config_file(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.reloader.set_path(path.into());
        self
    }

    /// How long MCP requests in flight at shutdown may take to finish (default 10 s).
    #[must_use]
    pub fn with_drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle on the running parts (for embedding hosts and tests).
    pub fn handle(&self) -> Handle {
        Handle {
            edge: self.edge.clone(),
            reloader: self.reloader.clone(),
        }
    }

    /// Serves until `stop`: monitors, catalog upkeep and the HTTP endpoints. Then drains:
    /// no new connections, `/readyz` answers 503, MCP requests in flight get up to the
    /// drain timeout to finish, listen streams get their final result, and only then are
    /// sessions (and their backend sessions) closed.
    pub async fn run(self, stop: CancellationToken) {
        let Vmcp {
            config,
            edge,
            reloader,
            gate,
            listener,
            metrics,
            drain_timeout,
            local_addr,
            workers,
        } = self;
        let tasks = TaskTracker::new();
        let router = edge.router.clone();
        let upstreams = router.upstreams();
        metrics::gauge!("toolhive_vmcp_backends_discovered").set(upstreams.len() as f64);
        for upstream in upstreams.iter() {
            tasks.spawn(upstream.clone().monitor(stop.clone()));
        }
        reloader.start(Spawner {
            tasks: tasks.clone(),
            stop: stop.clone(),
            workers,
        });
        tasks.spawn(reloader.clone().watch(stop.clone()));
        // What the upstreams and the catalog change flows back to the clients.
        let clients = edge.clients.clone();
        router
            .signals()
            .on_resource_update(Box::new(move |uri, params| {
                clients.resource_updated(uri, params);
            }));
        let clients = edge.clients.clone();
        tasks.spawn(
            router
                .clone()
                .maintain_catalog(stop.clone(), move |changed| clients.lists_changed(changed)),
        );
        Gate::register_metrics();
        crate::reload::register_metrics();
        metrics::gauge!("toolhive_vmcp_panic_mode").set(0.0);
        for refresher in gate.key_refreshers(&stop) {
            tasks.spawn(refresher);
        }

        let front = Arc::new(Front {
            edge,
            gate,
            hosts: HostPolicy::new(
                local_addr.ip().is_loopback(),
                &config.allowed_hosts,
                &config.allowed_origins,
            ),
            metrics,
            reloader,
            read_timeout: config.read_timeout,
            idle_timeout: config.idle_timeout,
            incoming: config
                .incoming_auth
                .as_ref()
                .map_or("none (loopback only)", |a| a.kind()),
        });
        tasks.spawn(expire_idle_sessions(front.clone(), stop.clone()));
        if let Some(store) = front.edge.store.clone() {
            crate::store::register_metrics();
            tasks.spawn(store.clone().connect(stop.clone()));
            let edge = front.edge.clone();
            tasks.spawn(store.listen(move |event| edge.heard(event), stop.clone()));
            let edge = front.edge.clone();
            let rewriting = stop.clone();
            tasks.spawn(async move { edge.rewrite_sessions(rewriting).await });
        }
        // Connections close gracefully once the drain is over.
        let connections_end = CancellationToken::new();
        let connections = TaskTracker::new();
        // Thread per core, as in hale proxy (hale-listen): a connection lives on one
        // worker thread from accept to close, and its requests never hop between threads.
        let started = hale_listen::Workers::start(
            "hale-vmcp",
            workers,
            crate::worker::enter,
            &connections,
            |_| {
                let (front, end) = (front.clone(), connections_end.clone());
                Arc::new(move |stream| {
                    Box::pin(serve_connection(front.clone(), stream, end.clone()))
                })
            },
        );
        let threads = match started {
            Ok(threads) => threads,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the worker threads; stopping");
                return;
            }
        };
        hale_listen::accept(listener, &threads, stop.clone()).await;

        // New connections are refused from here on (the listener is closed); open ones
        // may still ask.
        front.edge.draining.store(true, Ordering::Release);
        front.edge.in_flight.close();
        let drained = tokio::time::timeout(drain_timeout, front.edge.in_flight.wait()).await;
        if drained.is_err() {
            tracing::warn!(
                still_running = front.edge.in_flight.len(),
                "drain timeout: closing sessions with requests still in flight"
            );
        }
        front.edge.closing.cancel();
        connections_end.cancel();
        connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
        threads.join().await;
        front.edge.close_all().await;
        // Stdio backends' processes end last: calls to them had the drain to finish.
        let upstreams = front.edge.router.upstreams();
        futures_util::future::join_all(upstreams.iter().map(|u| u.end_process())).await;
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
        // The last spans and metrics, within what is left of the drain (a collector
        // that is down costs at most that).
        if let Some(telemetry) = hale_telemetry::get() {
            let telemetry_started = std::time::Instant::now();
            let within = drain_timeout.min(Duration::from_secs(3));
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown(within)).await;
            tracing::debug!(
                ms = telemetry_started.elapsed().as_millis() as u64,
                "telemetry flushed"
            );
        }
    }
}

/// One client connection: HTTP/1.1 with a header read timeout; an idle one is closed.
async fn serve_connection(
    front: Arc<Front>,
    stream: tokio::net::TcpStream,
    end: CancellationToken,
) {
    // A connection with nothing asked for `idle_timeout` is closed (an idle keep-alive,
    // or a client that connected and said nothing).
    let (read_timeout, idle_timeout) = (front.read_timeout, front.idle_timeout);
    let idle = Arc::new(Idle::default());
    let busy = idle.clone();
    let peer = stream.peer_addr().ok().map(|a| crate::edge::Peer(a.ip()));
    let local = stream.local_addr().ok().map(Local);
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let front = front.clone();
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer);
        }
        if let Some(local) = local {
            req.extensions_mut().insert(local);
        }
        let guard = busy.enter();
        async move {
            let response = front.route(req).await;
            // The connection counts as busy until the body is sent.
            Ok::<_, Infallible>(response.map(move |inner| {
                Held {
                    inner,
                    _guard: guard,
                }
                .boxed_unsync()
            }))
        }
    });
    // Small JSON-RPC messages: one flattened write beats an iovec (as in the proxy).
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(read_timeout)
        .writev(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = end.cancelled() => break,
            () = tokio::time::sleep(idle_timeout) => {
                if idle.idle() {
                    break;
                }
            }
        }
    }
    // Finish the response under way, then close instead of waiting for the next request.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
}

/// The address a request's connection reached (the listener's, as the client's packets
/// named it): a `Host` equal to it names this server.
#[derive(Clone, Copy, Debug)]
struct Local(SocketAddr);

/// Requests of one connection being answered (bodies included).
#[derive(Default)]
struct Idle(
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicBool,
);

impl Idle {
    fn enter(self: &Arc<Self>) -> IdleGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        self.1.store(true, Ordering::Release);
        IdleGuard(self.clone())
    }

    /// True if nothing was asked since the last look and nothing is being answered.
    fn idle(&self) -> bool {
        let asked = self.1.swap(false, Ordering::AcqRel);
        !asked && self.0.load(Ordering::Acquire) == 0
    }
}

struct IdleGuard(Arc<Idle>);

/// A body that holds a guard until it is dropped; everything else passes through (the
/// size hint too, so a complete body keeps its `Content-Length`).
struct Held<G> {
    inner: Body,
    _guard: G,
}

impl<G: Unpin + Send + 'static> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Ends abandoned client sessions, every quarter of `sessionIdleTimeout` (at most 30 s).
async fn expire_idle_sessions(front: Arc<Front>, stop: CancellationToken) {
    let every = (front.edge.settings.session_idle_timeout / 4).min(Duration::from_secs(30));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => front.edge.expire_idle().await,
        }
    }
}

struct Front {
    edge: Arc<Edge>,
    gate: Gate,
    hosts: HostPolicy,
    metrics: Option<PrometheusHandle>,
    reloader: Arc<Reloader>,
    read_timeout: Duration,
    idle_timeout: Duration,
    /// How callers are authenticated, for `/status`.
    incoming: &'static str,
}

/// The running parts of a vMCP, for embedding hosts and tests.
#[derive(Clone)]
pub struct Handle {
    edge: Arc<Edge>,
    reloader: Arc<Reloader>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// The router: the upstreams and the catalog over them.
    pub fn router(&self) -> &Arc<Router> {
        &self.edge.router
    }

    /// The upstreams now.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.edge.router.upstreams()
    }

    /// Wakes the catalog task, as a change of routability does.
    pub fn wake_catalog(&self) {
        self.edge.router.signals().changed.notify_one();
    }

    /// 2026-07-28 calls parked between `input_required` rounds.
    pub fn calls_waiting_for_input(&self) -> usize {
        self.edge.calls_waiting_for_input()
    }

    /// Reads the configuration file again and applies it (as SIGHUP does); on an error
    /// the running configuration stays.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.reloader.reload("asked").await
    }

    /// Client session `id`'s resumable state (see [`crate::Resumable`]).
    pub async fn resumable(&self, id: &str) -> Option<crate::Resumable> {
        self.edge.resumable(id).await
    }
}

impl Front {
    /// Answers one request: `Host` and `Origin` checked first; then a CORS preflight from
    /// an allowed origin is answered before any authentication (a browser sends no
    /// credentials with it), and every other answer to such an origin carries CORS.
    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
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
            let refused = edge::error_response(
                StatusCode::FORBIDDEN,
                &Value::Null,
                &RpcError::new(codes::REFUSED, refusal.to_string()),
            );
            return keep_alive_after(refused, req).await;
        }
        let Some(origin) = header(header::ORIGIN).map(str::to_string) else {
            return self.answer(req).await;
        };
        if req.method() == Method::OPTIONS {
            let requested = header(header::ACCESS_CONTROL_REQUEST_HEADERS);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            with_headers(&mut r, hale_core::cors::preflight(&origin, requested));
            return r;
        }
        let mut r = self.answer(req).await;
        with_headers(&mut r, hale_core::cors::response(&origin));
        r
    }

    /// Answers a request whose `Host` and `Origin` passed.
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if matches!(path, "/status" | "/api/backends/health" | "/metrics")
            && let Err(denied) = self.gate.admit_status(req.headers()).await
        {
            return self.gate.refuse(&denied, self.reached(&req), path);
        }
        if path.starts_with(crate::admin::PREFIX) {
            return match self.gate.admit_admin(req.headers()).await {
                None => json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "the admin API is off: configure operational.admin (a static token or an OIDC scope)"}),
                ),
                Some(Ok(who)) => {
                    crate::admin::serve(req, who, &self.edge.router, &self.reloader).await
                }
                Some(Err(denied)) => {
                    let path = path.to_string();
                    let refused = self.gate.refuse(&denied, self.reached(&req), &path);
                    keep_alive_after(refused, req).await
                }
            };
        }
        match (req.method(), path) {
            (_, "/mcp") => match self.gate.admit_mcp(req.headers(), self.reached(&req)).await {
                Ok(who) => self.edge.serve(req, who).await,
                Err(denied) => {
                    let refused = self.gate.refuse(&denied, self.reached(&req), "/mcp");
                    keep_alive_after(refused, req).await
                }
            },
            (&Method::GET, p)
                if p == METADATA_PATH || p.strip_prefix(METADATA_PATH) == Some("/mcp") =>
            {
                match self.gate.metadata(self.reached(&req)) {
                    Some(doc) => json_response(StatusCode::OK, &doc),
                    None => json_response(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "not found: this server does not authenticate callers (incomingAuth is anonymous)"}),
                    ),
                }
            }
            (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, "/readyz") => {
                let (mut ready, mut reason) = status::readiness(
                    &self.edge.router,
                    self.edge.draining.load(Ordering::Acquire),
                );
                // Not before the session store was tried once (reached or not): a
                // replica with Redis down still serves what it can.
                if ready && self.edge.store.as_ref().is_some_and(|s| !s.tried()) {
                    (ready, reason) = (false, "connecting to the session store".into());
                }
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(code, &json!({"ready": ready, "reason": reason}))
            }
            (&Method::GET, "/status") => {
                let mut doc = status::status(&self.edge, self.incoming);
                doc["auth"] = self.gate.describe();
                doc["configuration"] = self.reloader.describe();
                json_response(StatusCode::OK, &doc)
            }
            (&Method::GET, "/api/backends/health") => {
                json_response(StatusCode::OK, &status::backends_health(&self.edge.router))
            }
            (&Method::GET, "/metrics") => match &self.metrics {
                Some(handle) => {
                    let mut text = handle.render();
                    status::tool_circuit_series(&self.edge.router, &mut text);
                    let mut r = Response::new(full(text));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                }
                None => json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "metrics are not enabled"}),
                ),
            },
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not found: MCP is served at /mcp"}),
            ),
        }
    }
}

/// A refusal answered before the request's body was read: the body is read and dropped
/// first (a small one, quickly), so that the connection can carry the client's next
/// request (a client refused 401 fetches the metadata document next, on the same
/// connection); a body too large or too slow to read gets `Connection: close` instead of
/// a connection left in an unknown state.
async fn keep_alive_after(mut refused: Response<Body>, req: Request<Incoming>) -> Response<Body> {
    let read = Limited::new(req.into_body(), 64 * 1024).collect();
    let drained = matches!(
        tokio::time::timeout(Duration::from_secs(1), read).await,
        Ok(Ok(_))
    );
    if !drained {
        refused
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    refused
}

impl Front {
    /// How `req` reached the vMCP: its `Host`, and whether that certainly names this
    /// server (the connection's local address, `localhost` at its port on loopback, or
    /// a name in `allowedHosts`).
    fn reached<'r>(&self, req: &'r Request<Incoming>) -> Reached<'r> {
        let host = host_of(req);
        let local = req.extensions().get::<Local>().map(|l| l.0);
        Reached {
            host,
            names_self: matches!((host, local), (Some(h), Some(l)) if self.hosts.names_self(h, l)),
        }
    }
}

/// Adds `headers` to `r` (CORS: a value that is not a valid header value is skipped).
fn with_headers(r: &mut Response<Body>, headers: Vec<(&'static str, String)>) {
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

/// The request's `Host`, as text.
fn host_of(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
}
