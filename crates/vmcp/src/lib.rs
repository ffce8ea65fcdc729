//! `hale vmcp`: one MCP endpoint over many backends, with a health monitor and a circuit
//! breaker per backend, withdrawal and restoration of tools, and `fail` / `best_effort`
//! partial-failure modes.
//!
//! Not built yet: this crate is a placeholder in the workspace layout (spec §7).
