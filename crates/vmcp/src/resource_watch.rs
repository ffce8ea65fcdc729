//! Legacy client sessions waiting for updates of resources whose backend gives them no
//! session of their own (a 2026-07-28-only or stateless backend): the update arrives on
//! the backend's shared client, and is passed to each session that subscribed. (A
//! session with its own backend session gets its updates there, see `upstream`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::Value;

use crate::edge::ClientSession;
use crate::edge::message;

/// Subscribed sessions by resource URI. Locked only to subscribe, unsubscribe and pass
/// an update on: never on the call path.
#[derive(Debug, Default)]
pub(crate) struct ResourceWatch {
    by_uri: Mutex<HashMap<String, Vec<Weak<ClientSession>>>>,
}

impl ResourceWatch {
    /// `session` wants updates of `uri`.
    pub(crate) fn add(&self, uri: &str, session: &Arc<ClientSession>) {
        let mut by_uri = self.by_uri.lock().unwrap_or_else(PoisonError::into_inner);
        let sessions = by_uri.entry(uri.to_string()).or_default();
        sessions.retain(|s| s.strong_count() > 0);
        if !sessions.iter().any(|s| s.as_ptr() == Arc::as_ptr(session)) {
            sessions.push(Arc::downgrade(session));
        }
    }

    /// `session` no longer wants updates of `uri`.
    pub(crate) fn remove(&self, uri: &str, session: &Arc<ClientSession>) {
        let mut by_uri = self.by_uri.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sessions) = by_uri.get_mut(uri) {
            sessions.retain(|s| s.strong_count() > 0 && s.as_ptr() != Arc::as_ptr(session));
            if sessions.is_empty() {
                by_uri.remove(uri);
            }
        }
    }

    /// Passes an update of `uri` to the sessions that subscribed (on their GET
    /// streams), without the backend's subscription id. Returns how many were told.
    pub(crate) fn updated(&self, uri: &str, params: &Value) -> usize {
        let sessions: Vec<Arc<ClientSession>> = {
            let by_uri = self.by_uri.lock().unwrap_or_else(PoisonError::into_inner);
            by_uri
                .get(uri)
                .map(|s| s.iter().filter_map(Weak::upgrade).collect())
                .unwrap_or_default()
        };
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
