//! The vMCP's HTTP front: `/mcp` (rmcp, streamable HTTP) and the status endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (for embedding hosts and tests).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `stop`: monitors, catalog upkeep and the HTTP endpoints.
    pub async fn run(self, stop: CancellationToken) {
        let Vmcp {
            state,
            listener,
            metrics,
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

        let mut rmcp_config =
            StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token());
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
            let front = front.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let service = service_fn(move |req| {
                    let front = front.clone();
                    async move { Ok::<_, Infallible>(front.route(req).await) }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    }
}

type McpService = TowerToHyperService<StreamableHttpService<Handler, LocalSessionManager>>;

struct Front {
    state: Arc<State>,
    mcp: McpService,
    metrics: Option<PrometheusHandle>,
}

impl Front {
    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (_, "/mcp") => match hyper::service::Service::call(&self.mcp, req).await {
                Ok(response) => response.map(|b| b.boxed()),
                Err(never) => match never {},
            },
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
