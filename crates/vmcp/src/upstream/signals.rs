//! How the upstreams tell the rest of the vMCP that something changed: a wake-up for the
//! catalog, a generation counter for lists, and a sink for resource updates. Atomics and a wake-up only: nothing here is locked.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::Notify;

/// What a resource update on a shared client is handed to: the URI and the
/// notification's params.
pub(crate) type ResourceSink = Box<dyn Fn(&str, &Value) + Send + Sync>;

/// Shared by every upstream of one vMCP.
#[derive(Default)]
pub struct Signals {
    /// Woken when an upstream's routability or lists changed (the catalog task waits).
    pub changed: Notify,
    /// Bumped whenever any upstream's lists arrive; a catalog remembers the value it was
    /// built from.
    lists_generation: AtomicU64,
    /// Where resource updates arriving on shared clients go (set once, by the vMCP).
    resource_updates: OnceLock<ResourceSink>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("lists_generation", &self.lists_generation())
            .finish_non_exhaustive()
    }
}

impl Signals {
    /// The current lists generation.
    pub(crate) fn lists_generation(&self) -> u64 {
        self.lists_generation.load(Ordering::Acquire)
    }

    /// New lists arrived.
    pub(crate) fn lists_arrived(&self) {
        self.lists_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Sends resource updates of shared clients to `sink` from now on.
    pub(crate) fn on_resource_update(&self, sink: ResourceSink) {
        let _ = self.resource_updates.set(sink);
    }

    /// A resource update arrived on a shared client.
    pub(crate) fn resource_updated(&self, uri: &str, params: &Value) {
        if let Some(sink) = self.resource_updates.get() {
            sink(uri, params);
        }
    }
}
