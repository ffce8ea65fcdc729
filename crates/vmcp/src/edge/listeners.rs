//! Modern clients' `subscriptions/listen` streams, each with the filter hale
//! acknowledged: list changes and resource updates go to the streams that asked.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::modern::{Filter, tagged};
use crate::message;
use crate::route::ListsChanged;

struct Listener {
    id: u64,
    subscription: Value,
    filter: Filter,
    tx: mpsc::Sender<Bytes>,
}

/// Every open listen stream.
#[derive(Default)]
pub(crate) struct Listeners {
    list: Mutex<Vec<Listener>>,
    next: std::sync::atomic::AtomicU64,
}

/// A listen stream's place in [`Listeners`]; removed when the stream ends.
pub(crate) struct Registration {
    id: u64,
    listeners: std::sync::Weak<Listeners>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(listeners) = self.listeners.upgrade() {
            listeners.lock().retain(|l| l.id != self.id);
        }
    }
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a stream for `subscription` (the listen request's id) with `filter`.
    pub(crate) fn add(
        listeners: &std::sync::Arc<Listeners>,
        subscription: Value,
        filter: Filter,
        tx: mpsc::Sender<Bytes>,
    ) -> Registration {
        let id = listeners
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        listeners.lock().push(Listener {
            id,
            subscription,
            filter,
            tx,
        });
        Registration {
            id,
            listeners: std::sync::Arc::downgrade(listeners),
        }
    }

    /// Sends the list changes each listener asked for; returns how many were told.
    pub(crate) fn lists_changed(&self, changed: ListsChanged) -> u64 {
        let mut told = 0;
        self.lock().retain(|l| {
            let mut alive = true;
            for (yes, wanted, method) in [
                (
                    changed.tools,
                    l.filter.tools,
                    "notifications/tools/list_changed",
                ),
                (
                    changed.resources,
                    l.filter.resources,
                    "notifications/resources/list_changed",
                ),
                (
                    changed.prompts,
                    l.filter.prompts,
                    "notifications/prompts/list_changed",
                ),
            ] {
                if yes && wanted {
                    let params = tagged(serde_json::json!({}), &l.subscription);
                    alive &= !matches!(
                        l.tx.try_send(message::notification(method, &params)),
                        Err(mpsc::error::TrySendError::Closed(_))
                    );
                    told += 1;
                }
            }
            alive
        });
        told
    }

    /// Sends a resource update to the listeners subscribed to `uri`.
    pub(crate) fn resource_updated(&self, uri: &str, params: &Value) {
        for l in self.lock().iter() {
            if l.filter.resource_uris.iter().any(|u| u == uri) {
                let params = tagged(params.clone(), &l.subscription);
                let _ = l.tx.try_send(message::notification(
                    "notifications/resources/updated",
                    &params,
                ));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
