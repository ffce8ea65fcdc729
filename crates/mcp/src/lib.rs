//! The client side of MCP for hale: one client per backend URL over streamable HTTP or
//! legacy SSE, long-lived probe sessions, and the classification of everything that can go
//! wrong into [`hale_core`]'s outcomes.
//!
//! ```no_run
//! use hale_mcp::{ClientOptions, McpClient, TransportKind};
//!
//! # async fn demo() -> Result<(), hale_mcp::McpError> {
//! let client = McpClient::connect(
//!     "http://127.0.0.1:8081/mcp",
//!     ClientOptions { transport: TransportKind::StreamableHttp, ..Default::default() },
//! )
//! .await?;
//! client.ping().await?;
//! for tool in client.list_tools().await? {
//!     println!("{}", tool["name"]);
//! }
//! let result = client.call_tool("echo", serde_json::json!({"text": "hi"})).await?;
//! # let _ = result;
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! Errors say which server failed and how ([`McpError`]); [`McpError::category`] turns
//! them into hale-core's failure categories, and [`Probe`] turns a whole health check into
//! a [`hale_core::CheckOutcome`].

mod client;
pub mod codes;
mod credentials;
mod error;
mod http;
mod jsonrpc;
mod probe;
mod redact;
mod server_requests;
mod tls;
mod transport;
mod watched_file;

pub use client::{
    ClientOptions, Era, MODERN_PROTOCOL_VERSION, McpClient, PROTOCOL_VERSIONS, Pool, ServerInfo,
    StandaloneRequests,
};
pub use credentials::{Credentials, CredentialsBuilder, CredentialsError};
pub use error::{FailureCodes, McpError};
pub use http::error_chain;
pub use jsonrpc::Notification;
pub use probe::{Probe, ProbeMethod};
pub use redact::redact_url;
pub use server_requests::{
    CallHooks, NotificationSink, ServerRequest, ServerRequestError, ServerRequestFuture,
    ServerRequestHandler,
};
pub use tls::{Tls, TlsError, TlsOptions};
pub use transport::TransportKind;
pub use watched_file::{FILE_RECHECK, WatchedFile};
