//! A programmable MCP server that fails on command (`down`, `hang`, `slow`, `status`,
//! `malformed`, `forget_sessions`, `flap`), over streamable HTTP and legacy SSE, for
//! hale's tests, benchmarks and demo.
//!
//! Not built yet: this crate is a placeholder in the workspace layout (spec §5).
