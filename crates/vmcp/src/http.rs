//! The vMCP's HTTP front: `/mcp` (rmcp, streamable HTTP) and the status endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::VmcpConfig;
use crate::monitor::{self, MonitorSettings};
use crate::server::{Handler, State};

type Body = BoxBody<Bytes, Infallible>;

/// Why the vMCP could not start.
#[derive(Debug, thiserror::Error)]
pub enum VmcpError {
    /// The health or breaker settings are unusable.
    #[error("{0}")]
    Config(#[from] hale_core::ConfigError),
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
    state: Arc<State>,
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    drain_timeout: Duration,
}

impl Vmcp {
    /// Builds the backends' state and binds the listener.
    pub async fn bind(
        config: VmcpConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, VmcpError> {
        let addr = config.listen;
        let state = State::new(config)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| VmcpError::Listen { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| VmcpError::Listen { addr, source })?;
        Ok(Vmcp {
            state,
            listener,
            local_addr,
            metrics,
            drain_timeout: Duration::from_secs(10),
        })
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

    /// The shared state (for embedding hosts and tests).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `stop`: monitors, catalog upkeep and the HTTP endpoints. Then drains:
    /// no new connections, `/readyz` answers 503, MCP requests in flight get up to the
    /// drain timeout to finish, and only then are sessions and their streams closed.
    pub async fn run(self, stop: CancellationToken) {
        let Vmcp {
            state,
            listener,
            metrics,
            drain_timeout,
            ..
        } = self;
        let tasks = TaskTracker::new();
        let settings = MonitorSettings {
            interval: state.config.health.check_interval,
            timeout: state.config.health.check_timeout,
            method: state.config.health_check_method,
        };
        metrics::gauge!("toolhive_vmcp_backends_discovered").set(state.backends.len() as f64);
        for backend in &state.backends {
            tasks.spawn(monitor::run(
                backend.clone(),
                settings.clone(),
                state.changed.clone(),
                state.first_round.clone(),
                stop.clone(),
            ));
        }
        tasks.spawn(state.clone().maintain_catalog(stop.clone()));

        // Sessions outlive `stop` until the requests in flight are done.
        let sessions = CancellationToken::new();
        let mut rmcp_config =
            StreamableHttpServerConfig::default().with_cancellation_token(sessions.clone());
        if !state.config.listen.ip().is_loopback() {
            // Behind a Service or an Ingress the Host is not loopback; protection against
            // DNS rebinding is the network's job there.
            rmcp_config = rmcp_config.disable_allowed_hosts();
        }
        let handler_state = state.clone();
        let mcp = TowerToHyperService::new(StreamableHttpService::new(
            move || Ok(Handler::new(handler_state.clone())),
            LocalSessionManager::default().into(),
            rmcp_config,
        ));
        let front = Arc::new(Front {
            state: state.clone(),
            mcp,
            metrics,
            in_flight: TaskTracker::new(),
            draining: AtomicBool::new(false),
        });
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                },
            };
            // Small JSON-RPC answers must not wait for Nagle and a delayed ACK (40 ms).
            let _ = stream.set_nodelay(true);
            let service_front = front.clone();
            let sessions = sessions.clone();
            tasks.spawn(async move {
                let service = service_fn(move |req| {
                    let front = service_front.clone();
                    async move { Ok::<_, Infallible>(front.route(req).await) }
                });
                // Small JSON-RPC messages: one flattened write beats an iovec (as in the
                // proxy).
                let conn = http1::Builder::new()
                    .writev(false)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = sessions.cancelled() => {}
                }
                // Finish the response under way (a stream's body ends with its session),
                // then close instead of waiting for the next request.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            });
        }

        // New connections are refused from here on; open ones may still ask.
        drop(listener);
        front.draining.store(true, Ordering::Release);
        front.in_flight.close();
        let drained = tokio::time::timeout(drain_timeout, front.in_flight.wait()).await;
        if drained.is_err() {
            tracing::warn!(
                still_running = front.in_flight.len(),
                "drain timeout: closing sessions with requests still in flight"
            );
        }
        sessions.cancel();
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    }
}

type McpService = TowerToHyperService<StreamableHttpService<Handler, LocalSessionManager>>;

struct Front {
    state: Arc<State>,
    mcp: McpService,
    metrics: Option<PrometheusHandle>,
    /// One token per MCP POST being answered: shutdown waits for them.
    in_flight: TaskTracker,
    draining: AtomicBool,
}

impl Front {
    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::POST, "/mcp") if self.draining.load(Ordering::Acquire) => {
                let mut r = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": "the vMCP is shutting down"}}),
                );
                r.headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                r
            }
            (&Method::DELETE, "/mcp") => {
                let response = match hyper::service::Service::call(&self.mcp, req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                // rmcp accepts a session's end with 202; clients (the Python SDK among
                // them) expect 200 or 204 and log a failure otherwise.
                if response.status() == StatusCode::ACCEPTED {
                    let mut r = Response::new(Full::new(Bytes::new()).boxed());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    return r;
                }
                response.map(|b| b.boxed())
            }
            (_, "/mcp") => {
                // Held until the answer's body (an SSE stream for a POST) has ended.
                let working = (req.method() == Method::POST).then(|| self.in_flight.token());
                match hyper::service::Service::call(&self.mcp, req).await {
                    Ok(response) => response.map(|b| {
                        b.map_frame(move |frame| {
                            let _ = &working;
                            frame
                        })
                        .boxed()
                    }),
                    Err(never) => match never {},
                }
            }
            (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, "/readyz") => {
                let (ready, reason) = self.readiness();
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(code, &json!({"ready": ready, "reason": reason}))
            }
            (&Method::GET, "/status") => json_response(StatusCode::OK, &self.status().await),
            (&Method::GET, "/api/backends/health") => {
                json_response(StatusCode::OK, &self.backends_health())
            }
            (&Method::GET, "/metrics") => match &self.metrics {
                Some(handle) => {
                    let mut r = Response::new(Full::new(Bytes::from(handle.render())).boxed());
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

    fn readiness(&self) -> (bool, String) {
        if self.draining.load(Ordering::Acquire) {
            return (false, "shutting down".into());
        }
        let total = self.state.backends.len();
        let checked = self.state.first_round.checked();
        if total == 0 {
            return (true, "no backends configured".into());
        }
        if checked < total {
            return (
                false,
                format!("first round of health checks: {checked} of {total} backends checked"),
            );
        }
        let routable = self.state.backends.iter().filter(|b| b.routable()).count();
        if routable == 0 {
            return (false, format!("none of the {total} backends is routable"));
        }
        (true, format!("{routable} of {total} backends routable"))
    }

    async fn status(&self) -> Value {
        let backends: Vec<Value> = self.state.backends.iter().map(|b| b.status()).collect();
        let total = backends.len();
        let routable = self.state.backends.iter().filter(|b| b.routable()).count();
        let (phase, message) = if self.state.first_round.checked() < total {
            (
                "Pending",
                "waiting for the first round of health checks".to_string(),
            )
        } else if total == 0 || routable == total {
            ("Ready", format!("{routable} of {total} backends routable"))
        } else if routable > 0 {
            (
                "Degraded",
                format!("{routable} of {total} backends routable"),
            )
        } else {
            (
                "Failed",
                format!("none of the {total} backends is routable"),
            )
        };
        json!({"name": self.state.config.name, "phase": phase, "message": message, "backends": backends})
    }

    fn backends_health(&self) -> Value {
        let mut summary = json!({"total": 0, "healthy": 0, "degraded": 0, "unhealthy": 0, "unknown": 0, "unauthenticated": 0});
        let mut backends = serde_json::Map::new();
        for b in &self.state.backends {
            summary["total"] = json!(summary["total"].as_u64().unwrap_or(0) + 1);
            let state = b.health().as_str();
            summary[state] = json!(summary[state].as_u64().unwrap_or(0) + 1);
            backends.insert(b.config.name.clone(), b.status());
        }
        json!({"monitoringEnabled": true, "summary": summary, "backends": backends})
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
