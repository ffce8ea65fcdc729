//! `hale vmcp`: one MCP endpoint over many backends, with a health monitor and a circuit
//! breaker per backend, withdrawal and restoration of tools, and `fail` / `best_effort`
//! partial-failure modes.
//!
//! The parts, in the order a request meets them: [`config`] (ToolHive's keys, read
//! strictly), [`Vmcp`] (the listener, `Host`/`Origin` checks, status endpoints, drain),
//! `auth` (who may call), `edge` (the client edge: both protocol eras, client sessions,
//! listen streams, what flows back to clients), [`route`] (the [`route::Router`]: lists
//! and calls, the same in both eras, over the published catalog), and [`upstream`] (one
//! [`upstream::Upstream`] per backend: health and breaker, monitor, shared and
//! per-session clients, lists, metrics). Each imports only the ones after it; what the
//! upstreams change flows back up through [`upstream::Signals`].

mod admin;
mod auth;
mod body;
pub mod config;
pub(crate) mod edge;
mod http;
mod limits;
mod message;
mod reload;
pub mod route;
mod status;
mod store;
pub mod upstream;
mod worker;

pub use edge::Resumable;
pub use message::RpcError;

pub use config::{ConfigFileError, VmcpConfig};
pub use http::{Handle, Vmcp, VmcpError};
pub use reload::{ReloadError, ReloadSummary};

/// Every metric the vMCP exports (spec §7.3). The operations docs, the alert rules and the
/// dashboard may name only these; a test scrapes `/metrics` for each of them.
pub const METRICS: &[&str] = &[
    "toolhive_vmcp_backends_discovered",
    "toolhive_vmcp_backend_requests_total",
    "toolhive_vmcp_backend_errors_total",
    "toolhive_vmcp_backend_requests_duration_seconds",
    "toolhive_vmcp_backend_health_state",
    "toolhive_vmcp_backend_health_checks_total",
    "toolhive_vmcp_backend_health_check_duration_seconds",
    "toolhive_vmcp_backend_health_transitions_total",
    "toolhive_vmcp_backend_circuit_state",
    "toolhive_vmcp_backend_circuit_transitions_total",
    "toolhive_vmcp_backend_circuit_rejections_total",
    "toolhive_vmcp_tool_circuit_state",
    "toolhive_vmcp_backend_retries_total",
    "toolhive_vmcp_routable_backends",
    "toolhive_vmcp_catalog_tools",
    "toolhive_vmcp_list_changed_notifications_total",
    "toolhive_vmcp_partial_failures_total",
    "toolhive_vmcp_backend_sessions",
    "toolhive_vmcp_backend_sessions_total",
    "toolhive_vmcp_auth_refusals_total",
    "toolhive_vmcp_auth_jwks_fetches_total",
    "toolhive_vmcp_config_reloads_total",
    "toolhive_vmcp_config_last_reload_successful",
    "toolhive_vmcp_panic_mode",
    "toolhive_vmcp_session_store_errors_total",
    "toolhive_vmcp_session_store_duration_seconds",
    "toolhive_vmcp_client_sessions_resumed_total",
    "toolhive_vmcp_limit_hits_total",
];
