//! One MCP session with one process: the handshake done once, requests from any number of
//! HTTP clients sent under ids of the peer's own (so two clients' `id: 1` never meet)
//! and their answers routed back, progress to the call that asked for it, the process's
//! own requests (sampling, elicitation) to the one call in flight, and its
//! notifications to every listener.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::StdioCommand;
use crate::process::{Limits, Process};

/// The protocol version hale asks a stdio server for (the newest handshake-era one).
const PROTOCOL_VERSION: &str = "2025-11-25";

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// The process ended (or was ended) before answering.
    #[error("the stdio server ended before answering: {0}")]
    Ended(String),
}

struct Call {
    answer: oneshot::Sender<Value>,
    /// Where progress and the process's requests during this call go.
    interim: Option<mpsc::UnboundedSender<Value>>,
    token: Option<Value>,
}

/// A live session with one process.
pub(crate) struct Peer {
    process: Process,
    next_id: AtomicU64,
    calls: Mutex<HashMap<u64, Call>>,
    /// The answer to the handshake, as clients are given it.
    init: OnceLock<Value>,
    /// Milliseconds after `born` when the process last said anything.
    heard: AtomicU64,
    born: Instant,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts `command` and does the handshake with `params` (a client's `initialize`
    /// parameters, or hale's own), within `within`. Notifications go to `notifications`.
    pub(crate) async fn start(
        command: &StdioCommand,
        limits: Limits,
        params: Value,
        notifications: broadcast::Sender<Value>,
        within: Duration,
    ) -> Result<Arc<Peer>, String> {
        let (tx, rx) = mpsc::channel(1024);
        let process = Process::spawn(command, limits, tx)?;
        let peer = Arc::new(Peer {
            process,
            next_id: AtomicU64::new(1),
            calls: Mutex::default(),
            init: OnceLock::new(),
            heard: AtomicU64::new(0),
            born: Instant::now(),
        });
        tokio::spawn(route(Arc::downgrade(&peer), rx, notifications));
        let handshake =
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
        let answer = tokio::select! {
            a = tokio::time::timeout(within, peer.call(handshake, None)) => a,
            why = peer.process.ended() => {
                return Err(format!("`{command}` {why} before its handshake"));
            }
        };
        let answer = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(format!("`{command}`: {e}")),
            Err(_) => {
                peer.process.terminate(limits.grace).await;
                return Err(format!(
                    "`{command}` did not answer initialize within {within:?}"
                ));
            }
        };
        let Some(result) = answer.get("result").cloned() else {
            peer.process.terminate(limits.grace).await;
            return Err(format!(
                "`{command}` refused initialize: {}",
                answer.get("error").unwrap_or(&answer)
            ));
        };
        let _ = peer.init.set(result);
        peer.process
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        Ok(peer)
    }

    /// The parameters hale itself opens a shared process with: sampling and elicitation
    /// are declared (a vMCP relays them to the calling client), roots are not.
    pub(crate) fn own_params() -> Value {
        json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "hale-stdio", "version": env!("CARGO_PKG_VERSION")},
        })
    }

    /// The handshake's result.
    pub(crate) fn init(&self) -> Value {
        self.init.get().cloned().unwrap_or_default()
    }

    /// Sends `request` (a client's, with the client's id) and waits for the answer,
    /// returned with the client's id back in place. Progress for it and the process's
    /// requests during it go to `interim`. Dropping the future cancels the call at the
    /// process (`notifications/cancelled`).
    pub(crate) async fn call(
        &self,
        mut request: Value,
        interim: Option<mpsc::UnboundedSender<Value>>,
    ) -> Result<Value, CallError> {
        let theirs = request.get("id").cloned().unwrap_or(Value::Null);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let token = request.pointer("/params/_meta/progressToken").cloned();
        let (answer, answered) = oneshot::channel();
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Call {
                    answer,
                    interim,
                    token,
                },
            );
        let mut guard = Pending {
            peer: self,
            id,
            done: false,
        };
        if !self.process.send(&request).await {
            guard.done = true;
            self.forget(id);
            return Err(CallError::Ended(self.process.ended().await));
        }
        let mut answer = match answered.await {
            Ok(a) => a,
            Err(_) => {
                guard.done = true;
                return Err(CallError::Ended(self.process.ended().await));
            }
        };
        guard.done = true;
        answer["id"] = theirs;
        Ok(answer)
    }

    /// Writes a message as it is (a client's notification, or its answer to one of the
    /// process's requests).
    pub(crate) async fn send(&self, message: &Value) -> bool {
        self.process.send(message).await
    }

    /// Answers `ping` within `within`, or the process said something else meanwhile.
    pub(crate) async fn alive(&self, within: Duration) -> bool {
        let before = self.heard.load(Ordering::Relaxed);
        let ping = json!({"jsonrpc": "2.0", "id": 0, "method": "ping"});
        let answered = tokio::time::timeout(within, self.call(ping, None)).await;
        matches!(answered, Ok(Ok(_))) || self.heard.load(Ordering::Relaxed) != before
    }

    /// Waits until the process has ended; why.
    pub(crate) async fn ended(&self) -> String {
        self.process.ended().await
    }

    /// Whether the process has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.process.has_ended()
    }

    /// Ends the process (SIGTERM, then SIGKILL after `grace`).
    pub(crate) async fn terminate(&self, grace: Duration) {
        self.process.terminate(grace).await;
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn forget(&self, id: u64) -> Option<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }

    fn heard_now(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard.store(ms, Ordering::Relaxed);
    }
}

/// A call not answered yet: if its future is dropped (the client went away), the process
/// is told to stop working on it.
struct Pending<'a> {
    peer: &'a Peer,
    id: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done || self.peer.forget(self.id).is_none() {
            return;
        }
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.id, "reason": "the client went away"}});
        // Best effort, without waiting: the line goes if there is room for it.
        let _ = self.peer.process.try_send_now(&cancel);
    }
}

/// Delivers what the process says until its stdout closes; then every call still waiting
/// learns it ended (their answer senders are dropped).
async fn route(
    peer: std::sync::Weak<Peer>,
    mut messages: mpsc::Receiver<Value>,
    notifications: broadcast::Sender<Value>,
) {
    while let Some(message) = messages.recv().await {
        let Some(peer) = peer.upgrade() else {
            return;
        };
        peer.heard_now();
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id");
        match (method, id) {
            // An answer to one of ours.
            (None, Some(id)) => {
                if let Some(call) = id.as_u64().and_then(|id| peer.forget(id)) {
                    let _ = call.answer.send(message);
                }
            }
            (Some("ping"), Some(id)) => {
                peer.send(&json!({"jsonrpc": "2.0", "id": id, "result": {}}))
                    .await;
            }
            // The process asks something (sampling, elicitation, roots): the one call in
            // flight that can relay it gets it; with none or several, it is declined.
            (Some(asked), Some(id)) => {
                let relays: Vec<_> = {
                    let calls = peer.calls.lock().unwrap_or_else(PoisonError::into_inner);
                    calls.values().filter_map(|c| c.interim.clone()).collect()
                };
                let relayed = match relays.as_slice() {
                    [only] => only.send(message.clone()).is_ok(),
                    _ => false,
                };
                if !relayed {
                    let why = format!(
                        "{asked} cannot be relayed: it must come during exactly one call from a client that can answer it ({} calls in flight)",
                        relays.len()
                    );
                    peer.send(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": why}}))
                        .await;
                }
            }
            (Some("notifications/progress"), None) => {
                let token = message.pointer("/params/progressToken");
                let to = {
                    let calls = peer.calls.lock().unwrap_or_else(PoisonError::into_inner);
                    calls
                        .values()
                        .find(|c| c.token.as_ref() == token && token.is_some())
                        .and_then(|c| c.interim.clone())
                };
                if let Some(to) = to {
                    let _ = to.send(message);
                }
            }
            (Some(_), None) => {
                // Nobody listening is fine.
                let _ = notifications.send(message);
            }
            (None, None) => {}
        }
    }
    if let Some(peer) = peer.upgrade() {
        peer.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
