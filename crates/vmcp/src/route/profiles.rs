//! The catalogs of clients whose declared capabilities backends list something else to
//! (see `upstream::profiles`): built from each backend's lists for that profile, by the
//! same rules as the shared catalog, and kept until the shared catalog is rebuilt from
//! other lists or other backends. A profile every backend lists the same to is shown the
//! shared catalog itself: no copy, no extra work per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::catalog::{Catalog, Route};
use super::current::Published;
use crate::upstream::Profile;

/// Profiles whose catalogs are kept at most; past it they are all built again as asked.
const MAX_PROFILES: usize = 64;

/// What one caller is shown.
#[derive(Clone, Debug)]
pub(crate) enum View {
    /// The shared catalog.
    Shared(Arc<Published>),
    /// A catalog of the caller's profile's own.
    Own(Arc<Catalog>),
}

impl View {
    /// The catalog itself.
    pub(crate) fn catalog(&self) -> &Catalog {
        match self {
            View::Shared(published) => &published.catalog,
            View::Own(catalog) => catalog,
        }
    }

    /// Where tool `name` goes, if this is a catalog of the caller's own that has it (the
    /// shared catalog's routes are looked up, with their fallbacks, by the router).
    pub(crate) fn own_tool_route(&self, name: &str) -> Option<Route> {
        match self {
            View::Shared(_) => None,
            View::Own(catalog) => catalog.tool_routes.get(name).cloned(),
        }
    }
}

/// What a kept catalog was built beside: the shared catalog's lists generation and the
/// backends it included.
type Beside = (u64, Vec<String>);

/// The catalogs by profile.
#[derive(Debug, Default)]
pub(crate) struct Catalogs(Mutex<HashMap<Profile, (Beside, View)>>);

impl Catalogs {
    /// `profile`'s catalog, if one was built beside `published`.
    pub(crate) fn get(&self, profile: &Profile, published: &Arc<Published>) -> Option<View> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ((generation, included), view) = kept.get(profile)?;
        if *generation != published.generation() || included != published.included() {
            return None;
        }
        Some(match view {
            // The shared catalog as it is now (a rebuild from the same lists).
            View::Shared(_) => View::Shared(published.clone()),
            own => own.clone(),
        })
    }

    /// Keeps `view` as `profile`'s catalog beside `published`.
    pub(crate) fn keep(&self, profile: &Profile, published: &Published, view: View) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= MAX_PROFILES && !kept.contains_key(profile) {
            kept.clear();
        }
        let beside = (published.generation(), published.included().to_vec());
        kept.insert(profile.clone(), (beside, view));
    }
}
