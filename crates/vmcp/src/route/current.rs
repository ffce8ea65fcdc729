//! The catalog clients see now, as one value: what is advertised, how each name routes,
//! whose every tool is (withdrawn backends included), and the lists generation it was
//! built from. Rebuilt from the upstreams' lists whenever they or routability change,
//! and swapped whole: a request reads one `Arc` and never waits for a rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::catalog::{self, Catalog, Route};
use super::upstreams::Upstreams;
use crate::config::{ConflictResolution, ToolPolicy};

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
    owners: HashMap<String, Route>,
    /// The lists generation it was built from.
    generation: u64,
    /// Built in panic mode: too few backends routable, nothing withdrawn.
    pub(crate) panic: bool,
    /// The backends whose lists it was built from.
    included: Vec<String>,
}

impl Published {
    /// Where tool `name` would go if every backend were counted (its backend and the
    /// backend's name for it).
    pub(crate) fn owner_of_tool(&self, name: &str) -> Option<&Route> {
        self.owners.get(name)
    }

    /// The backends whose lists it was built from.
    pub(crate) fn included(&self) -> &[String] {
        &self.included
    }

    /// The lists generation it was built from.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// The current catalog, and the changes clients have not been told about yet.
#[derive(Debug, Default)]
pub(crate) struct Current {
    published: RwLock<Arc<Published>>,
    /// Since when each backend in its grace period has been unroutable.
    unroutable_since: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Changes made by any rebuild (the catalog task's or a request's) not yet announced.
    unsent: Mutex<ListsChanged>,
    /// Whether the configuration was reloaded, and the lines about hidden items said so
    /// far.
    said: Mutex<(bool, std::collections::BTreeSet<String>)>,
}

/// How a catalog is built: conflict resolution and per-backend policies.
pub(crate) struct Rules<'a> {
    pub(crate) strategy: &'a ConflictResolution,
    pub(crate) policies: &'a std::collections::BTreeMap<String, ToolPolicy>,
    /// Below this share of routable backends nothing is withdrawn.
    pub(crate) panic_threshold: f64,
    /// How long an unroutable backend's tools stay.
    pub(crate) grace: std::time::Duration,
}

/// What a rebuild did.
pub(crate) struct Rebuilt {
    /// What clients see changed.
    pub(crate) changed: ListsChanged,
    /// When a grace period ends (the catalog must look again then).
    pub(crate) wake_at: Option<tokio::time::Instant>,
}

impl Current {
    /// The catalog as clients see it now.
    pub(crate) fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether lists arrived (`generation` now) that the catalog was not built from.
    pub(crate) fn behind(&self, generation: u64) -> bool {
        generation != self.published().generation
    }

    /// The changes not announced yet, now taken.
    pub(crate) fn take_unsent(&self) -> ListsChanged {
        std::mem::take(&mut *self.unsent.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Published>> {
        self.published
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the catalog from the routable upstreams' lists, which are as new as lists
    /// `generation` at least; says which lists clients see changed. The change is also
    /// kept for the next notification, so a rebuild done by a request (which then wakes
    /// the catalog task) cannot swallow it.
    pub(crate) fn rebuild(
        &self,
        upstreams: &Upstreams,
        generation: u64,
        rules: &Rules<'_>,
    ) -> Rebuilt {
        let before = self.published();
        let panic = panic_mode(upstreams, rules.panic_threshold);
        if panic != before.panic {
            let (routable, of) = (upstreams.routable(), upstreams.len());
            if panic {
                tracing::warn!(
                    routable,
                    of,
                    threshold = rules.panic_threshold,
                    "panic mode: too few backends are routable to trust their health checks; nothing is withdrawn until more recover"
                );
            } else {
                tracing::info!(routable, of, "panic mode over: withdrawal by health again");
            }
            metrics::gauge!("toolhive_vmcp_panic_mode").set(if panic { 1.0 } else { 0.0 });
            crate::upstream::traced::decision(
                if panic {
                    "panic mode"
                } else {
                    "panic mode over"
                },
                panic,
                || {
                    vec![
                        opentelemetry::KeyValue::new("hale.routable", routable as i64),
                        opentelemetry::KeyValue::new("hale.backends", of as i64),
                    ]
                },
            );
        }
        let (kept, wake_at) = self.in_grace(upstreams, &before, rules.grace);
        // Arcs: a rebuild shares the cached lists instead of copying them.
        let (mut lists, mut all, mut listed, mut included) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Whether some backend offers less than it lists (a tool withdrawn by its own
        // circuit): then who owns what comes from the full lists.
        let mut narrowed = false;
        for u in upstreams.iter() {
            if let Some(l) = u.lists() {
                all.push(l.clone());
                listed.push(u);
                // Panic keeps every active backend; a grace period keeps one a while.
                let active = u.mode() == crate::upstream::Mode::Active;
                if u.routable() || (panic && active) || kept.contains(&u.name()) {
                    included.push(u.name().to_string());
                    let offered = u.health.tool_circuits.offered(l.clone());
                    narrowed |= !Arc::ptr_eq(&offered, &l);
                    lists.push(offered);
                }
            }
        }
        let catalog = match catalog::build(rules.strategy, rules.policies, &lists) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                // These lists cannot make a catalog: no point in trying them again.
                let mut published = self.write();
                if published.generation < generation {
                    *published = Arc::new(Published {
                        catalog: published.catalog.clone(),
                        owners: published.owners.clone(),
                        generation,
                        panic,
                        included: published.included.clone(),
                    });
                }
                return Rebuilt {
                    changed: ListsChanged::default(),
                    wake_at,
                };
            }
        };
        // Whose is each tool, withdrawn backends included. With every listed backend
        // routable (the usual case) that is the catalog's own routing table.
        let everything = if all.len() == lists.len() && !narrowed {
            Some(catalog.tool_routes.clone())
        } else {
            catalog::build(rules.strategy, rules.policies, &all)
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
            }
            None => self.published().owners.clone(),
        };
        metrics::gauge!("toolhive_vmcp_catalog_tools").set(catalog.tools.len() as f64);
        metrics::gauge!("toolhive_vmcp_routable_backends").set(upstreams.routable() as f64);
        let mut published = self.write();
        // A rebuild from newer lists finished first: this one has nothing to add.
        if generation < published.generation {
            return Rebuilt {
                changed: ListsChanged::default(),
                wake_at,
            };
        }
        let current = &published.catalog;
        self.announce_hidden(&catalog.warnings);
        let changed = ListsChanged {
            tools: current.tools != catalog.tools,
            resources: current.resources != catalog.resources
                || current.templates != catalog.templates,
            prompts: current.prompts != catalog.prompts,
        };
        // What leaving or joining the catalog means for clients, said once per change.
        for gone in published.included.iter().filter(|b| !included.contains(b)) {
            let n = published
                .catalog
                .tool_routes
                .values()
                .filter(|r| &r.backend == gone)
                .count();
            tracing::info!(backend = %gone, "{gone}: {n} tool(s) withdrawn from the catalog");
        }
        for back in included
            .iter()
            .filter(|b| !published.included.contains(b) && published.generation > 0)
        {
            let n = catalog
                .tool_routes
                .values()
                .filter(|r| &r.backend == back)
                .count();
            tracing::info!(backend = %back, "{back}: {n} tool(s) back in the catalog");
        }
        // Only now is the catalog built from these lists: a request that looked earlier
        // saw it behind and rebuilt (a tool just listed is never "unknown").
        *published = Arc::new(Published {
            catalog,
            owners,
            generation,
            panic,
            included,
        });
        drop(published);
        self.unsent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(changed);
        Rebuilt { changed, wake_at }
    }

    /// Says what the catalog hides, a line per backend and cause, once: at INFO (a fact
    /// of the configuration, not an alarm), at WARN when it is new after a configuration
    /// reload (the operator's change made it). What was said is not said again when it
    /// comes back (a backend's tools withdrawn and restored).
    fn announce_hidden(&self, hidden: &[catalog::Hidden]) {
        let lines = catalog::summarize(hidden);
        let mut said = self.said.lock().unwrap_or_else(PoisonError::into_inner);
        let reloaded = said.0;
        for line in lines {
            if said.1.insert(line.clone()) {
                if reloaded {
                    tracing::warn!("{line} (new since the configuration was reloaded)");
                } else {
                    tracing::info!("{line}");
                }
            }
        }
    }

    /// The configuration was reloaded: what it newly hides is said at WARN.
    pub(crate) fn reloaded(&self) {
        self.said.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
    }

    /// The unroutable backends whose tools stay a while (`withdrawalGracePeriod`): those
    /// the last catalog included that became unroutable less than `grace` ago; and when
    /// the first of those periods ends.
    fn in_grace<'u>(
        &self,
        upstreams: &'u Upstreams,
        before: &Published,
        grace: std::time::Duration,
    ) -> (Vec<&'u str>, Option<tokio::time::Instant>) {
        let mut since = self
            .unroutable_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if grace.is_zero() {
            since.clear();
            return (Vec::new(), None);
        }
        let now = tokio::time::Instant::now();
        let (mut kept, mut wake_at) = (Vec::new(), None::<tokio::time::Instant>);
        let active = |u: &crate::upstream::Upstream| u.mode() == crate::upstream::Mode::Active;
        since.retain(|name, _| {
            upstreams
                .get(name)
                .is_some_and(|u| !u.routable() && active(u))
        });
        for u in upstreams.iter() {
            // An operator's withdrawal (drain, maintenance) takes effect at once.
            if u.routable() || !active(u) {
                continue;
            }
            let from = match since.get(u.name()) {
                Some(&t) => t,
                None if before.included.iter().any(|n| n == u.name()) => {
                    since.insert(u.name().to_string(), now);
                    now
                }
                None => continue,
            };
            let ends = from + grace;
            if now < ends {
                kept.push(u.name());
                wake_at = Some(wake_at.map_or(ends, |w| w.min(ends)));
            }
        }
        (kept, wake_at)
    }
}

/// Whether too few of the backends that have been checked are routable (below
/// `threshold`): then failing health checks are more likely the gateway's own network
/// than every backend at once, and nothing is withdrawn.
fn panic_mode(upstreams: &Upstreams, threshold: f64) -> bool {
    let eligible: Vec<_> = upstreams
        .iter()
        .filter(|u| u.mode() == crate::upstream::Mode::Active && u.health.checked())
        .collect();
    if threshold <= 0.0 || eligible.is_empty() {
        return false;
    }
    let routable = eligible.iter().filter(|u| u.routable()).count();
    (routable as f64) < threshold * eligible.len() as f64
}
