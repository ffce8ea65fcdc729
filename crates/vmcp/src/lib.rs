//! `hale vmcp`: one MCP endpoint over many backends, with a health monitor and a circuit
//! breaker per backend, withdrawal and restoration of tools, and `fail` / `best_effort`
//! partial-failure modes.
//!
//! Built so far: the configuration ([`config`]), read strictly with ToolHive's keys, and
//! the catalog ([`aggregate`]): filters, overrides, `prefix` / `priority` / `manual`
//! conflict resolution and the routing table. The server itself (monitor, breakers on the
//! request path, router, list_changed, status) is the next step (spec §7).

pub mod aggregate;
pub mod backend;
pub mod config;
mod http;
pub mod monitor;
pub mod server;

pub use config::{ConfigFileError, VmcpConfig};
pub use http::{Vmcp, VmcpError};
