//! The upstreams the vMCP routes to now, in configuration order, found by name: a value,
//! replaced whole when the set changes (a reader keeps the set it took).

use std::collections::HashMap;
use std::sync::Arc;

use crate::upstream::Upstream;

/// Every upstream, in configuration order.
#[derive(Debug, Default)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    by_name: HashMap<String, usize>,
}

impl Upstreams {
    /// The set of `list` (names are unique: the configuration checked them).
    pub fn new(list: Vec<Arc<Upstream>>) -> Self {
        let by_name = list
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name().to_string(), i))
            .collect();
        Upstreams { list, by_name }
    }

    /// Upstream `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// Every upstream, in configuration order.
    pub fn iter(&self) -> std::slice::Iter<'_, Arc<Upstream>> {
        self.list.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many are routable now.
    pub fn routable(&self) -> usize {
        self.list.iter().filter(|u| u.routable()).count()
    }
}
