//! The catalog clients see now, as one value: what is advertised, how each name routes,
//! whose every tool is (withdrawn backends included), and the lists generation it was
//! built from. Rebuilt from the upstreams' lists whenever they or routability change,
//! and swapped whole: a request reads one `Arc` and never waits for a rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Router;
use super::catalog::{self, Catalog};

/// Which advertised lists a rebuild changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListsChanged {
    /// `tools/list`.
    pub tools: bool,
    /// `resources/list` or `resources/templates/list`.
    pub resources: bool,
    /// `prompts/list`.
    pub prompts: bool,
}

impl ListsChanged {
    pub(crate) fn any(self) -> bool {
        self.tools || self.resources || self.prompts
    }

    fn merge(&mut self, other: ListsChanged) {
        self.tools |= other.tools;
        self.resources |= other.resources;
        self.prompts |= other.prompts;
    }
}

/// One published catalog.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// What clients see and how it routes.
    pub(crate) catalog: Catalog,
    /// Every tool's backend, routable or not: how a call to a withdrawn tool learns whose
    /// it is without any work.
    owners: HashMap<String, String>,
    /// The lists generation it was built from.
    generation: u64,
}

impl Published {
    /// The backend that offers tool `name` when every backend is counted.
    pub(crate) fn owner_of_tool(&self, name: &str) -> Option<&str> {
        self.owners.get(name).map(String::as_str)
    }
}

/// The current catalog, and the changes clients have not been told about yet.
#[derive(Debug, Default)]
pub(crate) struct Current {
    published: RwLock<Arc<Published>>,
    /// Changes made by any rebuild (the catalog task's or a request's) not yet announced.
    unsent: Mutex<ListsChanged>,
}

impl Router {
    /// The catalog as clients see it now.
    pub(crate) fn published(&self) -> Arc<Published> {
        self.current
            .published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The catalog as clients see it now.
    pub fn catalog(&self) -> Catalog {
        self.published().catalog.clone()
    }

    /// Whether lists arrived that the catalog was not built from (a rebuild is due).
    pub(crate) fn catalog_behind(&self) -> bool {
        self.signals.lists_generation() != self.published().generation
    }

    /// Rebuilds the catalog from the routable upstreams' lists; says which lists clients
    /// see changed. The change is also kept for the next notification, so a rebuild done
    /// by a request (which then wakes the catalog task) cannot swallow it.
    pub fn rebuild(&self) -> ListsChanged {
        let upstreams = self.upstreams();
        // Read before the lists: a rebuild never claims lists newer than it saw.
        let generation = self.signals.lists_generation();
        // Arcs: a rebuild shares the cached lists instead of copying them.
        let (mut lists, mut all, mut listed) = (Vec::new(), Vec::new(), Vec::new());
        for u in upstreams.iter() {
            if let Some(l) = u.lists() {
                all.push(l.clone());
                listed.push(u);
                if u.routable() {
                    lists.push(l);
                }
            }
        }
        let (strategy, policies) = (&self.settings.conflict_resolution, &self.settings.tools);
        let catalog = match catalog::build(strategy, policies, &lists) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                // These lists cannot make a catalog: no point in trying them again.
                let mut published = self.write_published();
                if published.generation < generation {
                    *published = Arc::new(Published {
                        catalog: published.catalog.clone(),
                        owners: published.owners.clone(),
                        generation,
                    });
                }
                return ListsChanged::default();
            }
        };
        // Whose is each tool, withdrawn backends included. With every listed backend
        // routable (the usual case) that is the catalog's own routing table.
        let everything = if all.len() == lists.len() {
            Some(catalog.tool_routes.clone())
        } else {
            catalog::build(strategy, policies, &all)
                .ok()
                .map(|c| c.tool_routes)
        };
        let owners = match everything {
            Some(routes) => {
                // What each backend offers clients when routable, after filters and
                // conflict resolution: the `tools` of `/status` and `hale status`.
                let mut offered: HashMap<&str, usize> = HashMap::new();
                for route in routes.values() {
                    *offered.entry(route.backend.as_str()).or_default() += 1;
                }
                for u in listed {
                    u.health
                        .set_tools(offered.get(u.name()).copied().unwrap_or(0));
                }
                routes
                    .into_iter()
                    .map(|(name, route)| (name, route.backend))
                    .collect()
            }
            None => self.published().owners.clone(),
        };
        metrics::gauge!("toolhive_vmcp_catalog_tools").set(catalog.tools.len() as f64);
        metrics::gauge!("toolhive_vmcp_routable_backends").set(upstreams.routable() as f64);
        let mut published = self.write_published();
        // A rebuild from newer lists finished first: this one has nothing to add.
        if generation < published.generation {
            return ListsChanged::default();
        }
        let current = &published.catalog;
        // A conflict that persists is logged once, when it appears, not at every rebuild.
        for warning in catalog
            .warnings
            .iter()
            .filter(|w| !current.warnings.contains(w))
        {
            tracing::warn!("{warning}");
        }
        let changed = ListsChanged {
            tools: current.tools != catalog.tools,
            resources: current.resources != catalog.resources
                || current.templates != catalog.templates,
            prompts: current.prompts != catalog.prompts,
        };
        // Only now is the catalog built from these lists: a request that looked earlier
        // saw it behind and rebuilt (a tool just listed is never "unknown").
        *published = Arc::new(Published {
            catalog,
            owners,
            generation,
        });
        drop(published);
        self.current
            .unsent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(changed);
        changed
    }

    fn write_published(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Published>> {
        self.current
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A rebuild on a request's path: the catalog task sends the notification it calls for.
    pub(crate) fn rebuild_on_request(&self) {
        if self.rebuild().any() {
            self.signals.changed.notify_one();
        }
    }

    /// Keeps the catalog in step with the upstreams until `cancel`: on every change,
    /// fetch lists of upstreams that became reachable, rebuild, and hand `tell` what
    /// clients must hear, once per burst of changes.
    pub async fn maintain_catalog(
        self: Arc<Self>,
        cancel: CancellationToken,
        tell: impl Fn(ListsChanged) + Send,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.signals.changed.notified() => {}
            }
            // Coalesce a burst of changes into one rebuild and one notification.
            tokio::time::sleep(Duration::from_millis(50)).await;
            for u in self.upstreams().iter() {
                if u.health.reachable()
                    && u.lists().is_none()
                    && let Err(e) = u.refresh_lists().await
                {
                    tracing::warn!(backend = %u.name(), error = %e, "cannot list the backend's capabilities");
                }
            }
            self.rebuild();
            let unsent = std::mem::take(
                &mut *self
                    .current
                    .unsent
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if unsent.any() {
                tell(unsent);
            }
        }
    }
}
