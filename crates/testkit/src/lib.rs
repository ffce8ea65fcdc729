//! A programmable MCP server that fails on command, for hale's tests, benchmarks and demo.
//!
//! It serves the tools `echo`, `add` and `sleep` (plus the fixtures the MCP conformance
//! suite's server scenarios look for) over streamable HTTP (stateful or stateless) or
//! legacy HTTP+SSE, and misbehaves on request: [`Fault::Down`] closes the listener,
//! [`Fault::Hang`] never answers, [`Fault::Slow`], [`Fault::Status`],
//! [`Fault::Malformed`], [`Fault::Flap`]; [`TestServer::forget_sessions`] acts like a
//! restart, and adding or removing a tool sends `notifications/tools/list_changed`.
//! It counts what it sees.
//!
//! ```
//! use hale_testkit::{Fault, ServerConfig, TestServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = TestServer::start(ServerConfig::default()).await?;
//! println!("MCP at {}", server.url());
//! server.set_fault(Some(Fault::Status(503))).await;
//! server.set_fault(None).await;
//! assert_eq!(server.stats().requests, 0);
//! server.shutdown();
//! # Ok(()) }
//! ```

mod body;
mod catalog;
pub mod control;
mod faults;
mod issuer;
mod modern;
mod mrtr;
pub mod nginx;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod redis;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use faults::Fault;
pub use issuer::TestIssuer;
pub use modern::Era;

/// The transport a testkit server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP at [`ServerConfig::path`] (default `/mcp`).
    StreamableHttp,
    /// Legacy HTTP+SSE: `GET /sse`, then POSTs to `/message?sessionId=…`.
    Sse,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "streamable-http" => Ok(Transport::StreamableHttp),
            "sse" => Ok(Transport::Sse),
            other => Err(format!(
                "unknown transport {other:?}: expected streamable-http or sse"
            )),
        }
    }
}

/// How a testkit server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (default `127.0.0.1:0`, any free port).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// The streamable HTTP endpoint path.
    pub path: String,
    /// Streamable HTTP without sessions: every request stands alone, no GET stream.
    pub stateless: bool,
    /// Answer requests with `application/json` bodies instead of SSE streams.
    pub json_response: bool,
    /// Items per page of the list methods.
    pub page_size: usize,
    /// Refuse requests whose `Host` or `Origin` is not local (DNS-rebinding protection).
    pub validate_host: bool,
    /// Also offer per-session tools: `remember(value)` / `recall()` keep a value for the
    /// calling session, `count()` counts that session's calls.
    pub session_tools: bool,
    /// The protocol eras served (streamable HTTP): the handshake era only by default
    /// (the `serve` command's default is both).
    pub era: Era,
    /// Refuse every MCP request (401) without `Authorization: Bearer <this>`; changeable
    /// while running with [`TestServer::require_token`].
    pub require_token: Option<String>,
    /// The URI scheme of its resources (`test`, as the conformance suite expects, by
    /// default): servers side by side that should not offer the same URIs take others.
    pub resource_scheme: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            transport: Transport::StreamableHttp,
            path: "/mcp".into(),
            stateless: false,
            json_response: false,
            page_size: 100,
            validate_host: true,
            session_tools: false,
            era: Era::Legacy,
            require_token: None,
            resource_scheme: "test".into(),
        }
    }
}

/// What a server has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests that reached the MCP endpoints (faulted ones included).
    pub requests: u64,
    /// JSON-RPC messages by method (requests and notifications).
    pub by_method: BTreeMap<String, u64>,
    /// Sessions created.
    pub sessions_opened: u64,
    /// Sessions ended by DELETE.
    pub sessions_deleted: u64,
    /// Sessions open now.
    pub open_sessions: u64,
    /// Requests refused for a missing or wrong bearer token.
    pub unauthorized: u64,
    /// Requests that carried an `Authorization` header at all.
    pub with_authorization: u64,
}

/// A running testkit server. It stops when [`shutdown`](Self::shutdown) is called or the
/// handle is dropped.
#[derive(Clone)]
pub struct TestServer {
    shared: Arc<server::Shared>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Binds and starts serving.
    pub async fn start(config: ServerConfig) -> std::io::Result<TestServer> {
        Ok(TestServer {
            shared: server::Shared::start(config).await?,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The URL an MCP client connects to (`…/mcp`, or `…/sse` for legacy SSE).
    pub fn url(&self) -> String {
        match self.shared.config.transport {
            Transport::StreamableHttp => {
                format!("http://{}{}", self.shared.addr, self.shared.config.path)
            }
            Transport::Sse => format!("http://{}/sse", self.shared.addr),
        }
    }

    /// Puts a fault in force (`None` clears it and brings the server back up).
    pub async fn set_fault(&self, fault: Option<Fault>) {
        self.shared.set_fault(fault).await;
    }

    /// The fault in force.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.fault()
    }

    /// Forgets every session, as a restarted server would; their streams close.
    pub fn forget_sessions(&self) {
        self.shared.forget_sessions();
    }

    /// Adds a tool and notifies every open stream; false if the name is taken.
    pub fn add_tool(&self, name: &str) -> bool {
        let added = self.shared.catalog.add_tool(name);
        if added {
            self.shared.tools_changed();
        }
        added
    }

    /// Makes tool `name` fail every other call (JSON-RPC -32603), starting with the next,
    /// or answer again (`false`): a gray failure that never fails twice in a row.
    pub fn set_flaky(&self, name: &str, flaky: bool) {
        self.shared.catalog.set_flaky(name, flaky);
    }

    /// Removes a tool and notifies every open stream; false if there was none.
    pub fn remove_tool(&self, name: &str) -> bool {
        let removed = self.shared.catalog.remove_tool(name);
        if removed {
            self.shared.tools_changed();
        }
        removed
    }

    /// The names of the tools offered now.
    pub fn tool_names(&self) -> Vec<String> {
        self.shared.catalog.tool_names()
    }

    /// Refuse MCP requests (401) without `Authorization: Bearer <token>` from now on;
    /// `None`: accept any.
    pub fn require_token(&self, token: Option<&str>) {
        self.shared.require_token(token);
    }

    /// What this server has seen.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops serving and closes every connection.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}
