//! What an upstream offers, as its own `*/list` answers said: kept until the backend says
//! they changed (an `Arc`: a catalog rebuild shares them).

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

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

/// The lists, once fetched.
#[derive(Debug, Default)]
pub(crate) struct Lists(Mutex<Option<Arc<BackendLists>>>);

impl Lists {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<BackendLists>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lists, if fetched and not stale.
    pub(crate) fn get(&self) -> Option<Arc<BackendLists>> {
        self.lock().clone()
    }

    /// Keeps `lists` (the ones kept already, when they are the same: what was derived
    /// from them, such as the lists shown to each capability profile, stays good).
    pub(crate) fn set(&self, lists: BackendLists) {
        let mut kept = self.lock();
        if kept.as_deref() != Some(&lists) {
            *kept = Some(Arc::new(lists));
        }
    }

    /// Drops the lists: stale.
    pub(crate) fn forget(&self) {
        self.lock().take();
    }
}
