//! The client side of MCP for hale: one client per backend URL over streamable HTTP or
//! legacy SSE, long-lived probe sessions, and the classification of what went wrong into
//! [`hale_core::FailureCategory`].
//!
//! Not built yet: this crate is a placeholder in the workspace layout (spec §4).
