//! `hale proxy`: a transparent reverse proxy for one MCP server that health-checks it with
//! MCP pings and shuts down after `TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD` consecutive
//! failed checks.
//!
//! Not built yet: this crate is a placeholder in the workspace layout (spec §6).
