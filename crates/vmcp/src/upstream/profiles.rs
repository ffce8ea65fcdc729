//! What one backend offers clients by what they declared. Servers list some tools only to
//! clients that can serve them (server-everything's `get-roots-list` to clients with
//! `roots`, its sampling and elicitation tools to clients with those), so one shared list
//! cannot be right for every client. Clients are grouped by a [`Profile`] (their declared
//! capabilities, written canonically: clients of one SDK share one), and each backend's
//! lists are fetched once per profile and kept while the backend's own lists stand.
//! Where a profile's lists equal the shared ones (most backends: they gate nothing) the
//! shared lists themselves are kept, and nothing else is different for that profile.
//!
//! A 2026-07-28 caller has no session, so a handshake-era backend that gates by
//! capabilities is reached, for each profile, through a backend session opened with that
//! profile's capabilities (bounded); a legacy caller lists and calls through its own
//! backend session, opened with its own capabilities.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hale_mcp::McpClient;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::lists::BackendLists;

/// A client's declared capabilities, as one canonical text: clients that declared the
/// same are shown the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Profile(Arc<str>);

impl Profile {
    /// The profile of a client that declared `capabilities` (`null`: none).
    pub(crate) fn of(capabilities: &Value) -> Profile {
        let text = match capabilities {
            Value::Object(_) => capabilities.to_string(),
            _ => "{}".to_string(),
        };
        Profile(Arc::from(text))
    }

    /// What the shared clients declare (they relay sampling and elicitation): callers of
    /// this profile are shown the shared lists.
    pub(crate) fn shared() -> Value {
        json!({"sampling": {}, "elicitation": {}})
    }

    /// Whether callers of this profile see what the shared clients see.
    pub(crate) fn is_shared(&self) -> bool {
        self.0.as_ref() == r#"{"elicitation":{},"sampling":{}}"#
    }

    /// The capabilities themselves.
    pub(crate) fn capabilities(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or_else(|_| json!({}))
    }
}

/// Profiles kept per backend at most; past it they are all let go (and fetched again as
/// they are asked for).
const MAX_PROFILES: usize = 64;
/// Backend sessions opened for 2026-07-28 callers' profiles, per backend, at most.
const MAX_PROFILE_SESSIONS: usize = 16;

type Cell = Arc<OnceCell<Arc<McpClient>>>;

/// A profile's lists and the shared lists they were fetched beside.
type Beside = (Arc<BackendLists>, Arc<BackendLists>);

/// One backend's lists and sessions by profile.
#[derive(Default)]
pub(crate) struct ByProfile {
    /// Lists by profile, with the shared lists they were fetched beside (stale once
    /// those are replaced).
    lists: Mutex<HashMap<Profile, Beside>>,
    sessions: Mutex<HashMap<Profile, Cell>>,
}

impl ByProfile {
    /// `profile`'s lists, if fetched beside `shared` (the backend's lists now).
    pub(crate) fn lists(
        &self,
        profile: &Profile,
        shared: &Arc<BackendLists>,
    ) -> Option<Arc<BackendLists>> {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        let (beside, mine) = lists.get(profile)?;
        Arc::ptr_eq(beside, shared).then(|| mine.clone())
    }

    /// Keeps `listed` as `profile`'s lists beside `shared`: the shared lists themselves
    /// when they are the same.
    pub(crate) fn keep(
        &self,
        profile: &Profile,
        shared: &Arc<BackendLists>,
        listed: BackendLists,
    ) -> Arc<BackendLists> {
        let mine = if listed == **shared {
            shared.clone()
        } else {
            Arc::new(listed)
        };
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if lists.len() >= MAX_PROFILES && !lists.contains_key(profile) {
            lists.clear();
        }
        lists.insert(profile.clone(), (shared.clone(), mine.clone()));
        mine
    }

    /// Whether `profile` is shown lists of its own by this backend (beside `shared`).
    pub(crate) fn differs(&self, profile: &Profile, shared: &Arc<BackendLists>) -> bool {
        self.lists(profile, shared)
            .is_some_and(|mine| !Arc::ptr_eq(&mine, shared))
    }

    /// The cell of `profile`'s backend session; `None` past the bound.
    pub(crate) fn session(&self, profile: &Profile) -> Option<Cell> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = sessions.get(profile) {
            return Some(cell.clone());
        }
        if sessions.len() >= MAX_PROFILE_SESSIONS {
            return None;
        }
        Some(sessions.entry(profile.clone()).or_default().clone())
    }

    /// Forgets `profile`'s backend session (it failed to open).
    pub(crate) fn drop_session(&self, profile: &Profile) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(profile);
    }

    /// Every profile session, taken (the upstream goes away).
    pub(crate) fn take_sessions(&self) -> Vec<Arc<McpClient>> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .filter_map(|(_, cell)| cell.get().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_that_declared_the_same_share_a_profile_whatever_the_order() {
        let a = Profile::of(&json!({"sampling": {}, "roots": {"listChanged": true}}));
        let b = Profile::of(
            &serde_json::from_str(r#"{"roots":{"listChanged":true},"sampling":{}}"#).unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, Profile::of(&json!({"sampling": {}})));
        assert!(Profile::of(&Profile::shared()).is_shared());
        assert_eq!(Profile::of(&Value::Null), Profile::of(&json!({})));
        assert_eq!(a.capabilities()["roots"]["listChanged"], true);
    }

    #[test]
    fn a_profiles_lists_are_the_shared_ones_when_equal_and_stale_with_them() {
        let by = ByProfile::default();
        let shared = Arc::new(BackendLists {
            backend: "b".into(),
            tools: vec![json!({"name": "echo"})],
            ..BackendLists::default()
        });
        let roots = Profile::of(&json!({"roots": {}}));
        let plain = Profile::of(&json!({}));
        let mut more = (*shared).clone();
        more.tools.push(json!({"name": "get-roots-list"}));
        by.keep(&roots, &shared, more);
        let same = by.keep(&plain, &shared, (*shared).clone());
        assert!(Arc::ptr_eq(&same, &shared));
        assert!(by.differs(&roots, &shared));
        assert!(!by.differs(&plain, &shared));
        // New shared lists: what was fetched beside the old ones is stale.
        let newer = Arc::new((*shared).clone());
        assert!(by.lists(&roots, &newer).is_none());
    }
}
