//! What flows back to clients: list changes to every legacy session's GET stream and
//! every modern listener that asked; resource updates that arrive on a shared client to
//! the listeners and sessions that subscribed; and a backend's requests during a call
//! (sampling, elicitation, roots) to the legacy client that made the call.

use std::sync::Arc;

use bytes::Bytes;
use hale_mcp::{ServerRequest, ServerRequestError, ServerRequestFuture, ServerRequestHandler};
use serde_json::{Value, json};

use super::listeners::Listeners;
use super::session::{ClientSession, Sessions};
use crate::message;
use crate::route::ListsChanged;

/// Every client notifications may go to: legacy sessions and modern listen streams.
#[derive(Default)]
pub(crate) struct Clients {
    /// Legacy client sessions.
    pub(crate) sessions: Sessions,
    /// Modern clients' `subscriptions/listen` streams.
    pub(crate) listeners: Arc<Listeners>,
}

impl Clients {
    /// Sends the `list_changed` notifications `changed` calls for to every legacy
    /// session with a GET stream and every modern listener that asked for them.
    pub(crate) fn lists_changed(&self, changed: ListsChanged) {
        let kinds = [
            (changed.tools, "notifications/tools/list_changed"),
            (changed.resources, "notifications/resources/list_changed"),
            (changed.prompts, "notifications/prompts/list_changed"),
        ];
        let messages: Vec<Bytes> = kinds
            .iter()
            .filter(|(yes, _)| *yes)
            .map(|(_, method)| message::notification(method, &json!({})))
            .collect();
        let mut told = 0u64;
        for session in self.sessions.all() {
            let mut sent = false;
            for m in &messages {
                sent |= session.send(m.clone());
            }
            told += u64::from(sent);
        }
        told += self.listeners.lists_changed(changed);
        metrics::counter!("toolhive_vmcp_list_changed_notifications_total").increment(told);
        let lists: Vec<&str> = kinds
            .iter()
            .filter(|(yes, _)| *yes)
            .map(|(_, method)| method.trim_start_matches("notifications/"))
            .collect();
        tracing::info!(
            sessions = told,
            "clients told what changed: {} sent to {told} session(s) and listen stream(s)",
            lists.join(", ")
        );
    }

    /// An update of `uri` on a shared client: to the modern listeners of that URI and to
    /// the legacy sessions that subscribed through it (those with a backend session of
    /// their own hear there), without the backend's subscription id. Returns how many
    /// sessions were told.
    pub(crate) fn resource_updated(&self, uri: &str, params: &Value) -> usize {
        self.listeners.resource_updated(uri, params);
        let sessions: Vec<Arc<ClientSession>> = self
            .sessions
            .all()
            .into_iter()
            .filter(|s| s.watches(uri))
            .collect();
        if sessions.is_empty() {
            return 0;
        }
        let mut params = params.clone();
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.remove("io.modelcontextprotocol/subscriptionId");
            if meta.is_empty() {
                params.as_object_mut().map(|p| p.remove("_meta"));
            }
        }
        let note = message::notification("notifications/resources/updated", &params);
        sessions.iter().filter(|s| s.send(note.clone())).count()
    }
}

/// A backend's requests during `session`'s call go to the client on the call's stream
/// (`to_client`), and the client's answer back to the backend.
pub(crate) fn to_session(
    session: Arc<ClientSession>,
    to_client: tokio::sync::mpsc::UnboundedSender<Bytes>,
) -> ServerRequestHandler {
    Arc::new(move |request: ServerRequest| {
        let (session, to_client) = (session.clone(), to_client.clone());
        Box::pin(async move {
            let (id, answer) = session.ask();
            let params = request.params.unwrap_or_else(|| json!({}));
            if to_client
                .send(message::request(&id, &request.method, &params))
                .is_err()
            {
                session.forget(&id);
                return Err(ServerRequestError {
                    code: -32603,
                    message: "the client's stream is gone".into(),
                });
            }
            let forget = Forget {
                session: session.clone(),
                id,
            };
            let answer = answer.await;
            drop(forget);
            answer.unwrap_or_else(|_| {
                Err(ServerRequestError {
                    code: -32603,
                    message: "the client did not answer".into(),
                })
            })
        }) as ServerRequestFuture
    })
}

/// A 2026-07-28 client's call that goes straight to a backend has no stream for the
/// backend's requests: they are declined clearly.
pub(crate) fn declined() -> ServerRequestHandler {
    Arc::new(|request: ServerRequest| {
        Box::pin(async move {
            Err(ServerRequestError {
                code: -32601,
                message: format!(
                    "{} cannot be relayed to a 2026-07-28 client here (only during tools/call and prompts/get, as input_required rounds)",
                    request.method
                ),
            })
        }) as ServerRequestFuture
    })
}

/// Forgets a request of ours to the client when its call ends, however it ends.
struct Forget {
    session: Arc<ClientSession>,
    id: String,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.session.forget(&self.id);
    }
}
