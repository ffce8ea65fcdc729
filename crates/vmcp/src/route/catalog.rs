//! Building the advertised catalog from the routable backends' own lists: per-backend
//! filters and overrides first, then conflict resolution (ToolHive's rules, research
//! §2.3), and the routing table that maps every advertised name back to its backend.
//!
//! Pure: lists in, catalog out ([`build`]). The published catalog is rebuilt with it
//! whenever the routable set or a backend's list changes.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::config::{ConflictResolution, ToolPolicy};

pub use crate::upstream::BackendLists;

/// Where an advertised name goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The backend.
    pub backend: String,
    /// The name (or URI) the backend knows it by.
    pub original: String,
}

/// The advertised capabilities and how to route each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// Tools as clients see them (renamed, re-described).
    pub tools: Vec<Value>,
    /// Resources (URIs are never renamed).
    pub resources: Vec<Value>,
    /// Resource templates.
    pub templates: Vec<Value>,
    /// Prompts as clients see them.
    pub prompts: Vec<Value>,
    /// Advertised tool name → backend and original name.
    pub tool_routes: HashMap<String, Route>,
    /// Resource URI → backend.
    pub resource_routes: HashMap<String, Route>,
    /// Template (backend, uriTemplate), in order, for URIs no resource names exactly.
    pub template_routes: Vec<Route>,
    /// Advertised prompt name → backend and original name.
    pub prompt_routes: HashMap<String, Route>,
    /// What was hidden and why, for the log.
    pub warnings: Vec<Hidden>,
}

/// A tool, resource or prompt a backend offers that clients do not see, because another
/// backend's takes its place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hidden {
    /// `tool`, `resource` or `prompt`.
    pub kind: &'static str,
    /// Its name (or URI).
    pub item: String,
    /// The backend whose item is hidden.
    pub backend: String,
    /// The backend whose item is shown instead (`None`: another one, by priority).
    pub by: Option<String>,
    /// Why: `priority`, or `configuration order` (the first to offer it keeps it).
    pub reason: &'static str,
}

impl std::fmt::Display for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Hidden {
            kind,
            item,
            backend,
            ..
        } = self;
        match &self.by {
            Some(by) if self.reason == "priority" => {
                write!(
                    f,
                    "{kind} {item:?} of backend {backend:?} is hidden: {by} has priority"
                )
            }
            Some(by) => write!(
                f,
                "{kind} {item:?} of backend {backend:?} is hidden: backend {by:?} already offers that name"
            ),
            None => write!(
                f,
                "{kind} {item:?} of backend {backend:?} is hidden: another backend has priority"
            ),
        }
    }
}

/// One line per backend and cause, as an operator reads it: "search: 3 resources hidden
/// by weather (configuration order)".
pub fn summarize(hidden: &[Hidden]) -> Vec<String> {
    let mut counts: BTreeMap<(&str, Option<&str>, &str, &str), usize> = BTreeMap::new();
    for h in hidden {
        *counts
            .entry((h.backend.as_str(), h.by.as_deref(), h.kind, h.reason))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((backend, by, kind, reason), n)| {
            let plural = if n == 1 { "" } else { "s" };
            let by = by.map_or("another backend".to_string(), str::to_string);
            format!("{backend}: {n} {kind}{plural} hidden by {by} ({reason})")
        })
        .collect()
}

/// An unresolvable catalog: `manual` resolution with collisions left.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tool names collide and conflictResolution is manual: {}; add aggregation.tools[].overrides that rename them", .0.join("; "))]
pub struct Collisions(pub Vec<String>);

fn name_of(item: &Value, field: &str) -> Option<String> {
    item.get(field).and_then(Value::as_str).map(str::to_string)
}

fn prefixed(format: &str, backend: &str, name: &str) -> String {
    format!("{}{name}", format.replace("{workload}", backend))
}

/// Builds the catalog of `backends` (routable ones, in configuration order).
pub fn build<B: std::borrow::Borrow<BackendLists>>(
    strategy: &ConflictResolution,
    policies: &BTreeMap<String, ToolPolicy>,
    backends: &[B],
) -> Result<Catalog, Collisions> {
    // Shared lists (`Arc`s from the server's cache) or owned ones (tests) alike.
    let backends: Vec<&BackendLists> = backends.iter().map(|b| b.borrow()).collect();
    let mut catalog = Catalog::default();

    // 1. Filters and overrides. An explicit override name is final: it is what the
    //    operator wants clients to see, so no prefix is added to it.
    struct Candidate {
        backend: String,
        original: String,
        name: String,
        fixed: bool,
        tool: Value,
    }
    let mut candidates = Vec::new();
    for &b in &backends {
        let policy = policies.get(&b.backend);
        for tool in &b.tools {
            let Some(original) = name_of(tool, "name") else {
                continue;
            };
            if let Some(filter) = policy.and_then(|p| p.filter.as_ref())
                && !filter.contains(&original)
            {
                continue;
            }
            let mut tool = tool.clone();
            let mut name = original.clone();
            let mut fixed = false;
            if let Some(o) = policy.and_then(|p| p.overrides.get(&original)) {
                if let Some(new_name) = &o.name {
                    name = new_name.clone();
                    fixed = true;
                }
                if let Some(description) = &o.description {
                    tool["description"] = Value::String(description.clone());
                }
            }
            candidates.push(Candidate {
                backend: b.backend.clone(),
                original,
                name,
                fixed,
                tool,
            });
        }
    }

    // 2. Conflict resolution, over the names left after step 1.
    let mut holders: HashMap<String, Vec<String>> = HashMap::new();
    for c in &candidates {
        holders
            .entry(c.name.clone())
            .or_default()
            .push(c.backend.clone());
    }
    let mut collisions = Vec::new();
    let mut winners: Vec<(String, Candidate)> = Vec::new();
    for c in candidates {
        let rivals = &holders[&c.name];
        let conflicting = rivals.len() > 1;
        let advertised = match strategy {
            ConflictResolution::Prefix { format } if !c.fixed => {
                Some(prefixed(format, &c.backend, &c.name))
            }
            ConflictResolution::Prefix { .. } => Some(c.name.clone()),
            ConflictResolution::Priority { order } if conflicting => {
                let rank = |backend: &String| order.iter().position(|o| o == backend);
                match rivals
                    .iter()
                    .filter(|b| rank(b).is_some())
                    .min_by_key(|b| rank(b))
                {
                    // No rival is ranked: all of them fall back to prefixed names.
                    None => Some(prefixed("{workload}_", &c.backend, &c.name)),
                    Some(best) if *best == c.backend => Some(c.name.clone()),
                    Some(best) => {
                        catalog.warnings.push(Hidden {
                            kind: "tool",
                            item: c.name.clone(),
                            backend: c.backend.clone(),
                            by: Some(best.clone()),
                            reason: "priority",
                        });
                        None
                    }
                }
            }
            ConflictResolution::Priority { .. } => Some(c.name.clone()),
            ConflictResolution::Manual if conflicting => {
                collisions.push(format!(
                    "{:?} (backend {:?}, tool {:?})",
                    c.name, c.backend, c.original
                ));
                None
            }
            ConflictResolution::Manual => Some(c.name.clone()),
        };
        if let Some(name) = advertised {
            winners.push((name, c));
        }
    }
    if !collisions.is_empty() {
        return Err(Collisions(collisions));
    }

    // 3. Names that still collide (after prefixing): the first in configuration order
    //    keeps it.
    for (name, c) in winners {
        if let Some(route) = catalog.tool_routes.get(&name) {
            catalog.warnings.push(Hidden {
                kind: "tool",
                item: name.clone(),
                backend: c.backend.clone(),
                by: Some(route.backend.clone()),
                reason: "configuration order",
            });
            continue;
        }
        let mut tool = c.tool;
        tool["name"] = Value::String(name.clone());
        catalog.tools.push(tool);
        catalog.tool_routes.insert(
            name,
            Route {
                backend: c.backend,
                original: c.original,
            },
        );
    }

    // Resources and templates: URIs are never renamed; the first backend keeps a URI.
    for &b in &backends {
        for resource in &b.resources {
            let Some(uri) = name_of(resource, "uri") else {
                continue;
            };
            if let Some(route) = catalog.resource_routes.get(&uri) {
                catalog.warnings.push(Hidden {
                    kind: "resource",
                    item: uri.clone(),
                    backend: b.backend.clone(),
                    by: Some(route.backend.clone()),
                    reason: "configuration order",
                });
                continue;
            }
            catalog.resources.push(resource.clone());
            catalog.resource_routes.insert(
                uri.clone(),
                Route {
                    backend: b.backend.clone(),
                    original: uri,
                },
            );
        }
        for template in &b.templates {
            let Some(uri) = name_of(template, "uriTemplate") else {
                continue;
            };
            if catalog.template_routes.iter().any(|r| r.original == uri) {
                continue;
            }
            catalog.templates.push(template.clone());
            catalog.template_routes.push(Route {
                backend: b.backend.clone(),
                original: uri,
            });
        }
    }

    // Prompts: prefixed like tools under `prefix`; under `priority` a listed backend keeps
    // the bare name and the others drop it; otherwise the first backend keeps it.
    for &b in &backends {
        for prompt in &b.prompts {
            let Some(original) = name_of(prompt, "name") else {
                continue;
            };
            let name = match strategy {
                ConflictResolution::Prefix { format } => prefixed(format, &b.backend, &original),
                _ => original.clone(),
            };
            if let ConflictResolution::Priority { order } = strategy {
                let holders: Vec<&BackendLists> = backends
                    .iter()
                    .copied()
                    .filter(|o| {
                        o.prompts
                            .iter()
                            .any(|p| name_of(p, "name").as_deref() == Some(original.as_str()))
                    })
                    .collect();
                if holders.len() > 1 {
                    let best = holders
                        .iter()
                        .filter_map(|h| {
                            order
                                .iter()
                                .position(|o| *o == h.backend)
                                .map(|r| (r, h.backend.clone()))
                        })
                        .min()
                        .map(|(_, backend)| backend);
                    if best.is_some() && best.as_deref() != Some(b.backend.as_str()) {
                        catalog.warnings.push(Hidden {
                            kind: "prompt",
                            item: original.clone(),
                            backend: b.backend.clone(),
                            by: best.clone(),
                            reason: "priority",
                        });
                        continue;
                    }
                }
            }
            if let Some(route) = catalog.prompt_routes.get(&name) {
                catalog.warnings.push(Hidden {
                    kind: "prompt",
                    item: name.clone(),
                    backend: b.backend.clone(),
                    by: Some(route.backend.clone()),
                    reason: "configuration order",
                });
                continue;
            }
            let mut prompt = prompt.clone();
            prompt["name"] = Value::String(name.clone());
            catalog.prompts.push(prompt);
            catalog.prompt_routes.insert(
                name,
                Route {
                    backend: b.backend.clone(),
                    original,
                },
            );
        }
    }
    Ok(catalog)
}

/// One of the catalog's lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `tools`.
    Tools,
    /// `resources`.
    Resources,
    /// `resourceTemplates`.
    Templates,
    /// `prompts`.
    Prompts,
}

impl Catalog {
    /// The `kind` list, less the items of the backends in `without` (a `best_effort`
    /// answer holds only what the backends that answered gave).
    pub fn items(&self, kind: Kind, without: &[&str]) -> Vec<Value> {
        let (items, routes, key) = match kind {
            Kind::Tools => (&self.tools, &self.tool_routes, "name"),
            Kind::Resources => (&self.resources, &self.resource_routes, "uri"),
            Kind::Prompts => (&self.prompts, &self.prompt_routes, "name"),
            Kind::Templates => {
                return self
                    .templates
                    .iter()
                    .zip(&self.template_routes)
                    .filter(|(_, r)| !without.contains(&r.backend.as_str()))
                    .map(|(t, _)| t.clone())
                    .collect();
            }
        };
        if without.is_empty() {
            return items.clone();
        }
        items
            .iter()
            .filter(|item| {
                name_of(item, key)
                    .and_then(|n| routes.get(&n))
                    .is_none_or(|r| !without.contains(&r.backend.as_str()))
            })
            .cloned()
            .collect()
    }

    /// The backend and URI for a `resources/read` of `uri`: an exact resource first, then
    /// the first template that matches.
    pub fn route_resource(&self, uri: &str) -> Option<Route> {
        if let Some(route) = self.resource_routes.get(uri) {
            return Some(route.clone());
        }
        self.template_routes
            .iter()
            .find(|r| template_matches(&r.original, uri))
            .map(|r| Route {
                backend: r.backend.clone(),
                original: uri.to_string(),
            })
    }
}

/// RFC 6570 level-1 matching: literal parts must match; each `{var}` takes one or more
/// characters other than `/`.
fn template_matches(template: &str, uri: &str) -> bool {
    let mut rest = uri;
    let mut parts = template.split('{');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(after) = rest.strip_prefix(first) else {
        return false;
    };
    rest = after;
    for part in parts {
        let Some((_, literal)) = part.split_once('}') else {
            return false;
        };
        let end = if literal.is_empty() {
            rest.find('/').unwrap_or(rest.len())
        } else {
            match rest.find(literal) {
                Some(i) => i,
                None => return false,
            }
        };
        if end == 0 || rest[..end].contains('/') {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ToolOverride;
    use serde_json::json;

    fn tools(backend: &str, names: &[&str]) -> BackendLists {
        BackendLists {
            backend: backend.into(),
            tools: names.iter().map(|n| json!({"name": n, "description": format!("{backend} {n}"), "inputSchema": {"type": "object"}})).collect(),
            ..BackendLists::default()
        }
    }

    fn names(c: &Catalog) -> Vec<&str> {
        c.tools
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    fn prefix() -> ConflictResolution {
        ConflictResolution::Prefix {
            format: "{workload}_".into(),
        }
    }

    #[test]
    fn prefix_renames_every_tool_and_routes_back() {
        let c = build(
            &prefix(),
            &BTreeMap::new(),
            &[
                tools("weather", &["echo", "forecast"]),
                tools("search", &["echo"]),
            ],
        )
        .unwrap();
        assert_eq!(
            names(&c),
            ["weather_echo", "weather_forecast", "search_echo"]
        );
        assert_eq!(
            c.tool_routes["search_echo"],
            Route {
                backend: "search".into(),
                original: "echo".into()
            }
        );
        assert_eq!(
            c.tools[0]["inputSchema"],
            json!({"type": "object"}),
            "everything else passes untouched"
        );
    }

    #[test]
    fn a_collision_left_after_prefixing_keeps_the_first_backend() {
        // "a_" + "b_x" and "a_b" + "_x" both give "a_b_x".
        let c = build(
            &prefix(),
            &BTreeMap::new(),
            &[tools("a", &["b_x"]), tools("a_b", &["x"])],
        )
        .unwrap();
        assert_eq!(names(&c), ["a_b_x"]);
        assert_eq!(c.tool_routes["a_b_x"].backend, "a");
        assert!(
            c.warnings[0]
                .to_string()
                .contains("already offers that name"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn filters_and_overrides_come_first_and_override_names_are_final() {
        let mut policies = BTreeMap::new();
        policies.insert(
            "weather".to_string(),
            ToolPolicy {
                filter: Some(vec!["forecast".into()]),
                overrides: [(
                    "forecast".to_string(),
                    ToolOverride {
                        name: Some("weather_forecast".into()),
                        description: Some("Five days".into()),
                    },
                )]
                .into(),
            },
        );
        let c = build(
            &prefix(),
            &policies,
            &[tools("weather", &["echo", "forecast"])],
        )
        .unwrap();
        assert_eq!(
            names(&c),
            ["weather_forecast"],
            "echo is filtered out; the override is not prefixed again"
        );
        assert_eq!(c.tools[0]["description"], "Five days");
        assert_eq!(c.tool_routes["weather_forecast"].original, "forecast");
    }

    #[test]
    fn priority_keeps_bare_names_and_lets_the_listed_backend_win() {
        let strategy = ConflictResolution::Priority {
            order: vec!["search".into(), "weather".into()],
        };
        let c = build(
            &strategy,
            &BTreeMap::new(),
            &[
                tools("weather", &["echo", "forecast"]),
                tools("search", &["echo"]),
            ],
        )
        .unwrap();
        assert_eq!(names(&c), ["forecast", "echo"]);
        assert_eq!(c.tool_routes["echo"].backend, "search");
        assert!(
            c.warnings.iter().any(|w| w
                .to_string()
                .contains("\"echo\" of backend \"weather\" is hidden")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn priority_falls_back_to_prefixes_when_no_candidate_is_listed() {
        let strategy = ConflictResolution::Priority {
            order: vec!["other".into()],
        };
        let c = build(
            &strategy,
            &BTreeMap::new(),
            &[tools("a", &["echo"]), tools("b", &["echo"])],
        )
        .unwrap();
        assert_eq!(names(&c), ["a_echo", "b_echo"]);
    }

    #[test]
    fn manual_needs_overrides_for_every_collision() {
        let backends = [tools("a", &["echo", "x"]), tools("b", &["echo"])];
        let err = build(&ConflictResolution::Manual, &BTreeMap::new(), &backends).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.to_string()
                .contains("\"echo\" (backend \"a\", tool \"echo\")"),
            "{err}"
        );

        let mut policies = BTreeMap::new();
        policies.insert(
            "b".to_string(),
            ToolPolicy {
                filter: None,
                overrides: [(
                    "echo".to_string(),
                    ToolOverride {
                        name: Some("b_echo".into()),
                        description: None,
                    },
                )]
                .into(),
            },
        );
        let c = build(&ConflictResolution::Manual, &policies, &backends).unwrap();
        assert_eq!(names(&c), ["echo", "x", "b_echo"]);
        assert_eq!(
            c.tool_routes["b_echo"],
            Route {
                backend: "b".into(),
                original: "echo".into()
            }
        );
    }

    #[test]
    fn resources_keep_their_uris_and_the_first_backend_wins() {
        let a = BackendLists {
            backend: "a".into(),
            resources: vec![json!({"uri": "file:///x", "name": "x"})],
            templates: vec![json!({"uriTemplate": "test://template/{id}/data", "name": "t"})],
            ..BackendLists::default()
        };
        let b = BackendLists {
            backend: "b".into(),
            resources: vec![
                json!({"uri": "file:///x", "name": "x"}),
                json!({"uri": "file:///y", "name": "y"}),
            ],
            ..BackendLists::default()
        };
        let c = build(&prefix(), &BTreeMap::new(), &[a, b]).unwrap();
        assert_eq!(c.resources.len(), 2);
        assert_eq!(c.route_resource("file:///x").unwrap().backend, "a");
        assert_eq!(c.route_resource("file:///y").unwrap().backend, "b");
        let templated = c.route_resource("test://template/42/data").unwrap();
        assert_eq!(
            (templated.backend.as_str(), templated.original.as_str()),
            ("a", "test://template/42/data")
        );
        assert_eq!(
            c.route_resource("test://template/4/2/data"),
            None,
            "a variable does not span '/'"
        );
        assert_eq!(
            c.route_resource("test://template//data"),
            None,
            "a variable is not empty"
        );
    }

    #[test]
    fn prompts_follow_the_tool_rules() {
        let p = |backend: &str, names: &[&str]| BackendLists {
            backend: backend.into(),
            prompts: names.iter().map(|n| json!({"name": n})).collect(),
            ..BackendLists::default()
        };
        let c = build(
            &prefix(),
            &BTreeMap::new(),
            &[p("a", &["greet"]), p("b", &["greet"])],
        )
        .unwrap();
        let names: Vec<_> = c
            .prompts
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a_greet", "b_greet"]);
        let strategy = ConflictResolution::Priority {
            order: vec!["b".into()],
        };
        let c = build(
            &strategy,
            &BTreeMap::new(),
            &[p("a", &["greet"]), p("b", &["greet"])],
        )
        .unwrap();
        assert_eq!(c.prompt_routes["greet"].backend, "b");
        assert_eq!(c.prompts.len(), 1);
    }

    #[test]
    fn templates_match_level_one_expressions() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/7/data"
        ));
        assert!(template_matches("file:///{path}", "file:///notes"));
        assert!(!template_matches("file:///{path}", "file:///a/b"));
        assert!(template_matches("x://{a}-{b}", "x://1-2"));
        assert!(!template_matches("x://{a}", "y://1"));
    }
}
