//! hale's stdio MCP servers: a program that speaks MCP on its stdin and stdout
//! (`npx @modelcontextprotocol/server-filesystem`, `uvx mcp-server-time`), launched and
//! supervised by hale, and served as streamable HTTP on a loopback port so that the
//! vMCP's upstreams and the transparent proxy reach it like any HTTP server.
//!
//! ```no_run
//! use hale_stdio::{StdioCommand, StdioConfig, StdioServer};
//! use tokio_util::sync::CancellationToken;
//! # async fn demo() -> std::io::Result<()> {
//! let server = StdioServer::bind(StdioConfig::new(StdioCommand::new("uvx", ["mcp-server-time"])))?;
//! println!("MCP at {}", server.url()); // http://127.0.0.1:PORT/mcp
//! let stop = CancellationToken::new();
//! tokio::spawn(server.run(stop.clone()));
//! // … and when done: the process group gets SIGTERM, then SIGKILL after a grace.
//! stop.cancel();
//! # Ok(()) }
//! ```
//!
//! The parts, the way a message flows: [`http`](crate) (the loopback front), `peer` (one
//! MCP session with one process: ids, answers, progress, the process's requests),
//! `process` (spawn, pipes, the process group), `supervisor` (restarts, hangs) and
//! [`restart`] (the backoff, without I/O).

mod command;
mod http;
mod legacy;
mod peer;
mod process;
pub mod restart;
mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use command::StdioCommand;
pub use process::Limits;
pub use restart::RestartPolicy;
pub use supervisor::HangCheck;

use http::Front;
use supervisor::Current;

/// One process for every client, or one per client session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// One process serves every client (as ToolHive runs stdio servers); to clients it
    /// is a server without sessions.
    #[default]
    Shared,
    /// Each client session (each `initialize`) gets a process of its own, ended when the
    /// session ends; at most `max_sessions` at once.
    PerSession,
}

/// How a stdio server is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdioConfig {
    /// What to run.
    pub command: StdioCommand,
    /// Shared or per session.
    pub isolation: Isolation,
    /// Processes at once with [`Isolation::PerSession`].
    pub max_sessions: usize,
    /// Line size, stop grace, stderr rate.
    pub limits: Limits,
    /// When to start a shared process again after it ends.
    pub restart: RestartPolicy,
    /// How a shared process that stopped answering is found.
    pub hang: HangCheck,
    /// How long a process has to answer `initialize` (npx may download first).
    pub handshake_timeout: Duration,
}

impl StdioConfig {
    /// `command`, shared, with the defaults.
    pub fn new(command: StdioCommand) -> Self {
        StdioConfig {
            command,
            isolation: Isolation::Shared,
            max_sessions: 100,
            limits: Limits::default(),
            restart: RestartPolicy::default(),
            hang: HangCheck::default(),
            handshake_timeout: Duration::from_secs(120),
        }
    }
}

/// What can be seen of a running stdio server from outside.
#[derive(Clone, Debug)]
pub struct StdioStatus {
    front: Arc<Front>,
    restarts: Arc<AtomicU64>,
    command: String,
}

impl StdioStatus {
    /// The command line (program and arguments; no environment values).
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Processes running now.
    pub fn processes(&self) -> usize {
        self.front.processes()
    }

    /// How many times the shared process ended and was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// For `/status`.
    pub fn describe(&self) -> Value {
        serde_json::json!({
            "command": self.command,
            "processes": self.processes(),
            "restarts": self.restarts(),
        })
    }
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Front::Shared { .. } => "Front::Shared",
            Front::PerSession { .. } => "Front::PerSession",
        })
    }
}

/// A stdio server bound to a loopback port, not serving yet.
#[derive(Debug)]
pub struct StdioServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    config: StdioConfig,
    front: Arc<Front>,
    current: Option<(watch::Sender<Current>, broadcast::Sender<Value>)>,
    restarts: Arc<AtomicU64>,
}

impl StdioServer {
    /// Binds a free loopback port (nothing runs until [`StdioServer::run`]).
    pub fn bind(config: StdioConfig) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (front, current) = match config.isolation {
            Isolation::Shared => {
                let (tx, rx) = watch::channel(Current::Starting);
                let (notifications, _) = broadcast::channel(256);
                (
                    Front::Shared {
                        current: rx,
                        notifications: notifications.clone(),
                    },
                    Some((tx, notifications)),
                )
            }
            Isolation::PerSession => (
                Front::PerSession {
                    command: config.command.clone(),
                    limits: config.limits,
                    handshake_timeout: config.handshake_timeout,
                    max: config.max_sessions.max(1),
                    sessions: std::sync::Mutex::default(),
                },
                None,
            ),
        };
        Ok(StdioServer {
            listener,
            addr,
            config,
            front: Arc::new(front),
            current,
            restarts: Arc::default(),
        })
    }

    /// Its MCP endpoint: `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Its legacy HTTP+SSE endpoint (MCP 2024-11-05): `http://127.0.0.1:PORT/sse`.
    pub fn sse_url(&self) -> String {
        format!("http://{}/sse", self.addr)
    }

    /// A view of it for status pages.
    pub fn status(&self) -> StdioStatus {
        StdioStatus {
            front: self.front.clone(),
            restarts: self.restarts.clone(),
            command: self.config.command.to_string(),
        }
    }

    /// Starts the process (shared) and serves until `stop`; then ends every process it
    /// started (SIGTERM to the group, SIGKILL after the grace) and returns.
    pub async fn run(self, stop: CancellationToken) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the stdio server's loopback port cannot be used");
                return;
            }
        };
        let supervisor = self.current.map(|(current, notifications)| {
            tokio::spawn(supervisor::supervise(
                supervisor::Supervision {
                    command: self.config.command.clone(),
                    limits: self.config.limits,
                    restart: self.config.restart,
                    hang: self.config.hang,
                    handshake_timeout: self.config.handshake_timeout,
                },
                current,
                notifications,
                self.restarts.clone(),
                stop.clone(),
            ))
        });
        let legacy = Arc::new(legacy::Legacy::default());
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            let (front, legacy) = (self.front.clone(), legacy.clone());
            connections.spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: ::http::Request<hyper::body::Incoming>| {
                        let (front, legacy) = (front.clone(), legacy.clone());
                        async move {
                            // Streamable HTTP at /mcp (and anywhere else); legacy SSE at /sse
                            // and /messages.
                            let answer = match (req.method(), req.uri().path()) {
                                (&::http::Method::GET, "/sse") => legacy.open(&front),
                                (&::http::Method::POST, legacy::MESSAGES) => {
                                    legacy.post(&front, req).await
                                }
                                _ => front.serve(req).await,
                            };
                            Ok::<_, std::convert::Infallible>(answer)
                        }
                    },
                );
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
        connections.abort_all();
        self.front.end_all(self.config.limits.grace).await;
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
    }
}
