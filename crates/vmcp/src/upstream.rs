//! Client sessions' own backend sessions: opened on a client's first request that needs
//! a stateful backend, with that client's capabilities and info, over the backend's
//! shared keep-alive connections; closed (DELETE) when the client session ends.
//!
//! Health and breaker stay per backend and are fed by every client's calls; a backend
//! session the backend lost is initialized again by hale-mcp, for that client alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hale_mcp::{ClientOptions, McpClient, McpError, codes};
use serde_json::json;

use crate::edge::ClientSession;
use crate::edge::message;
use crate::server::State;

/// Opens `session`'s backend session with backend `i`, within `maxSessionsPerBackend`.
pub(crate) async fn open(
    state: &Arc<State>,
    i: usize,
    session: &Arc<ClientSession>,
) -> Result<Arc<McpClient>, McpError> {
    let backend = &state.backends[i];
    let name = backend.config.name.clone();
    let limit = state.config.max_sessions_per_backend;
    let open = &state.backend_sessions[i];
    if open
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_err()
    {
        metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name.clone(), "event" => "refused").increment(1);
        return Err(McpError::Rpc {
            url: name.clone(),
            method: "initialize".into(),
            code: codes::LIMIT_REACHED,
            message: format!(
                "backend '{name}' has {limit} sessions open (operational.maxSessionsPerBackend); try again when one closes"
            ),
            data: Some(json!({"backend": name, "maxSessionsPerBackend": limit})),
        });
    }
    let options = ClientOptions {
        transport: backend.config.transport,
        request_timeout: state.config.timeout_for(&name),
        client_name: "hale-vmcp".into(),
        capabilities: Some(session.capabilities.clone()),
        client_info: Some(session.client_info.clone()),
        // A session is a header, not a connection: no GET stream per client session
        // unless the client subscribes to something.
        listen: false,
        pool: Some(state.pool(i)),
        // A client session's own backend session is a handshake-era session.
        era: hale_mcp::Era::Legacy,
        credentials: Some(backend.config.credentials.clone()),
        ..ClientOptions::default()
    };
    let client = match McpClient::connect(&backend.config.url, options).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            open.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
    };
    metrics::gauge!("toolhive_vmcp_backend_sessions", "backend" => name.clone()).increment(1.0);
    metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name.clone(), "event" => "opened").increment(1);
    forward_notifications(&client, session);
    let level = session
        .log_level
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(level) = level
        && client.server_info().await.has("logging")
    {
        let _ = client
            .request("logging/setLevel", Some(json!({"level": level})))
            .await;
    }
    Ok(client)
}

/// What a backend session sends outside any call (its GET stream: resource updates, log
/// messages) goes to the client that owns it, and to nobody else.
fn forward_notifications(client: &Arc<McpClient>, session: &Arc<ClientSession>) {
    let mut notes = client.notifications();
    let owner = Arc::downgrade(session);
    tokio::spawn(async move {
        while let Ok(note) = notes.recv().await {
            let Some(owner) = owner.upgrade() else { return };
            if note.method.ends_with("/list_changed") {
                continue; // the catalog's business, announced by the vMCP itself
            }
            let params = note.params.unwrap_or_else(|| json!({}));
            owner.send(message::notification(&note.method, &params));
        }
    });
}

/// Ends `session`'s backend sessions (DELETE), counting each as `event`
/// (`closed`, `expired`).
pub(crate) async fn close(state: &State, session: &ClientSession, event: &'static str) {
    let mut closing = Vec::new();
    for (i, cell) in session.backends.iter().enumerate() {
        if let Some(client) = cell.get() {
            let name = state.backends[i].config.name.clone();
            state.backend_sessions[i].fetch_sub(1, Ordering::AcqRel);
            metrics::gauge!("toolhive_vmcp_backend_sessions", "backend" => name.clone())
                .decrement(1.0);
            metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => name, "event" => event).increment(1);
            let client = client.clone();
            closing.push(async move { client.close().await });
        }
    }
    futures_util::future::join_all(closing).await;
}
