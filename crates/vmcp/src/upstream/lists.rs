//! What an upstream offers, as its own `*/list` answers said: fetched through the
//! breaker when the catalog needs them, kept until the backend says they changed.

use std::sync::{Arc, Mutex, PoisonError};

use hale_mcp::McpError;
use serde_json::Value;

use super::{CallError, Upstream};

/// One backend's own lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendLists {
    /// The backend's name.
    pub backend: String,
    /// Its tools (`tools/list` entries).
    pub tools: Vec<Value>,
    /// Its resources.
    pub resources: Vec<Value>,
    /// Its resource templates.
    pub templates: Vec<Value>,
    /// Its prompts.
    pub prompts: Vec<Value>,
}

/// The lists, once fetched (an `Arc`: a catalog rebuild shares them).
#[derive(Default)]
pub(super) struct Lists(Mutex<Option<Arc<BackendLists>>>);

impl Lists {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<BackendLists>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A backend whose answers cannot be used: the server refused the listing or the
/// handshake with a JSON-RPC error, or its answer broke the protocol or hale's limits.
fn unusable(e: &McpError) -> bool {
    matches!(e, McpError::Protocol { .. } | McpError::Rpc { .. })
}

/// The message of an unusable backend's withdrawal.
pub(crate) fn unusable_reason(why: &str) -> String {
    format!("unusable: {why}")
}

impl Upstream {
    /// Its lists, if fetched and not stale.
    pub fn lists(&self) -> Option<Arc<BackendLists>> {
        self.lists.lock().clone()
    }

    /// Drops the lists (the backend said they changed): the next catalog round fetches
    /// them again.
    pub(crate) fn forget_lists(&self) {
        self.lists.lock().take();
    }

    /// Fetches the lists of the capabilities the backend declared.
    pub(crate) async fn refresh_lists(self: &Arc<Self>) -> Result<(), String> {
        let name = self.name().to_string();
        // One admission for the whole refresh: its failure feeds the breaker like a call's.
        let lists = self
            .guarded("tools/list", true, None, async |client| {
                let info = client.server_info().await;
                let mut lists = BackendLists {
                    backend: name.clone(),
                    ..BackendLists::default()
                };
                if info.has("tools") {
                    lists.tools = client.list_tools().await?;
                }
                if info.has("resources") {
                    lists.resources = client.list_resources().await?;
                    lists.templates = client.list_resource_templates().await.unwrap_or_default();
                }
                if info.has("prompts") {
                    lists.prompts = client.list_prompts().await?;
                }
                Ok(lists)
            })
            .await;
        let lists = match lists {
            Ok(lists) => lists,
            Err(CallError::Backend(e)) if unusable(&e) => {
                // It answers, but its listing cannot be used: withdraw it (it never takes
                // the other backends' lists down), say why in /status, try again later.
                let why = e.to_string();
                tracing::warn!(backend = %name, reason = %why, "backend withdrawn: it answers but its capabilities cannot be used");
                if self.health.set_unusable(Some(why.clone())) {
                    self.health.withdrawn.notify_waiters();
                    self.signals.changed.notify_one();
                }
                let (upstream, again) = (Arc::downgrade(self), self.settings.health.check_interval);
                tokio::spawn(async move {
                    tokio::time::sleep(again).await;
                    if let Some(upstream) = upstream.upgrade() {
                        upstream.signals.changed.notify_one();
                    }
                });
                return Err(unusable_reason(&why));
            }
            Err(e) => return Err(e.to_string()),
        };
        if self.health.set_unusable(None) {
            self.signals.changed.notify_one();
        }
        *self.lists.lock() = Some(Arc::new(lists));
        self.signals.lists_changed();
        Ok(())
    }
}
