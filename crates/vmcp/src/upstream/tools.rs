//! Per-tool breakers (`circuitBreaker.perTool`), nested in the backend's: a tool whose
//! calls fail or crawl by the breaker's rules gets an open circuit of its own, its calls
//! fail fast and it leaves `tools/list`, while the backend's other tools keep serving.
//!
//! The backend's breaker counts every call to the backend, a tool's breaker only that
//! tool's calls; each opens by its own rules (so many tools failing together open the
//! backend's). A tool's breaker is made on its first call, and only for a tool the
//! backend lists (bounded by `maxToolsPerBackend`). The map is read without a lock
//! (`ArcSwap`); a new tool copies it, once.
//!
//! While open a tool is withdrawn; when its open timeout passes it is listed again
//! (half-open), so that clients call it and the first call is its trial: a withdrawn
//! tool gets no calls, and could never be tried otherwise.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use hale_core::{BreakerConfig, BreakerState, Override, SharedBreaker, Transition};
use opentelemetry::KeyValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Signals;
use super::health::TokioClock;
use super::lists::BackendLists;

/// One tool's breaker, and why it last changed.
#[derive(Debug)]
pub(crate) struct ToolCircuit {
    /// The backend's own name for the tool.
    pub name: String,
    /// Its breaker, with the backend's rules.
    pub breaker: SharedBreaker<TokioClock>,
    /// The cause of its last transition ("40 % of the last 50 calls failed, …").
    reason: Mutex<Option<String>>,
}

impl ToolCircuit {
    /// Whether the tool is withdrawn: open by its own rules or forced open (a breaker
    /// that only tracks, `circuitBreaker.enabled: false`, withdraws nothing).
    pub(crate) fn withdrawn(&self) -> bool {
        self.breaker.state() == BreakerState::Open
            && self.breaker.snapshot().override_ != Some(Override::Disabled)
    }

    /// Remembers why it moved.
    pub(crate) fn moved(&self, t: &Transition) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(t.cause.to_string());
    }

    /// Why it last moved.
    pub(crate) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The per-tool breakers of one backend.
pub(crate) struct ToolCircuits {
    config: BreakerConfig,
    /// `circuitBreaker.enabled`: false makes them only track and report.
    enforce: bool,
    /// `circuitBreaker.perTool`.
    on: bool,
    seed: u64,
    map: ArcSwap<HashMap<String, Arc<ToolCircuit>>>,
}

impl std::fmt::Debug for ToolCircuits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCircuits")
            .field("tools", &self.map.load().len())
            .finish_non_exhaustive()
    }
}

impl ToolCircuits {
    pub(crate) fn new(config: &BreakerConfig, enforce: bool, on: bool, seed: u64) -> Self {
        ToolCircuits {
            config: config.clone(),
            enforce,
            on,
            seed,
            map: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Tool `name`'s breaker, made on first use if the backend lists it (`lists`, asked
    /// only then); `None` when per-tool breakers are off or the tool is not listed.
    pub(crate) fn of(
        &self,
        name: &str,
        lists: impl FnOnce() -> Option<Arc<BackendLists>>,
    ) -> Option<Arc<ToolCircuit>> {
        if !self.on {
            return None;
        }
        if let Some(c) = self.map.load().get(name) {
            return Some(c.clone());
        }
        let listed = lists()?
            .tools
            .iter()
            .any(|t| t.get("name").and_then(Value::as_str) == Some(name));
        if !listed {
            return None;
        }
        let seed = super::health::seed(name) ^ self.seed;
        // Validated with the backend's own breaker: cannot fail.
        let breaker = SharedBreaker::new(&self.config, seed, TokioClock).ok()?;
        if !self.enforce {
            breaker.disable();
        }
        let made = Arc::new(ToolCircuit {
            name: name.to_string(),
            breaker,
            reason: Mutex::new(None),
        });
        let mut kept = made.clone();
        self.map.rcu(|map| {
            if let Some(existing) = map.get(name) {
                // Another caller made it first: use theirs.
                kept = existing.clone();
                return map.clone();
            }
            let mut map = HashMap::clone(map);
            map.insert(name.to_string(), made.clone());
            Arc::new(map)
        });
        Some(kept)
    }

    /// The tools whose circuit withdraws them now.
    pub(crate) fn withdrawn(&self) -> BTreeSet<String> {
        self.map
            .load()
            .values()
            .filter(|c| c.withdrawn())
            .map(|c| c.name.clone())
            .collect()
    }

    /// Whether tool `name` is withdrawn by its circuit.
    pub(crate) fn is_withdrawn(&self, name: &str) -> bool {
        self.map.load().get(name).is_some_and(|c| c.withdrawn())
    }

    /// `lists` without the withdrawn tools (the same lists when none is).
    pub(crate) fn offered(&self, lists: Arc<BackendLists>) -> Arc<BackendLists> {
        let gone = self.withdrawn();
        if gone.is_empty() {
            return lists;
        }
        let mut offered = BackendLists::clone(&lists);
        offered.tools.retain(|t| {
            !t.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| gone.contains(n))
        });
        Arc::new(offered)
    }

    /// Every tool circuit that is not closed (or is overridden), for `/status`: `wall`
    /// turns an instant into the wall-clock time shown.
    pub(crate) fn status(&self, wall: impl Fn(Instant) -> String) -> Vec<Value> {
        let map = self.map.load();
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let c = &map[name];
                let s = c.breaker.snapshot();
                if s.state == BreakerState::Closed && s.override_.is_none() {
                    return None;
                }
                Some(json!({
                    "tool": name,
                    "state": s.state.as_str(),
                    "override": s.override_.map(|o| o.as_str()),
                    "since": s.since.map(&wall),
                    "retryAt": s.retry_at.map(&wall),
                    "reason": c.reason(),
                }))
            })
            .collect()
    }

    /// Starts every tool circuit that is not closed over closed (their backend
    /// recovered: a timeout-ridden outage may have opened tools that are fine), except
    /// those an operator forced.
    pub(crate) fn reset_open(&self, backend: &str, signals: &Signals) {
        let mut restored = 0;
        for c in self.map.load().values() {
            if let Some(t) = c.breaker.reset("its backend recovered") {
                c.moved(&t);
                restored += 1;
                tracing::info!(backend = %backend, tool = %c.name, from = %t.from, reason = %t.cause, "tool circuit changed");
            }
        }
        if restored > 0 {
            signals.changed.notify_one();
        }
    }

    /// Folds each tool's lock-free counts into its time window (once a second).
    pub(crate) fn tick(&self) {
        for c in self.map.load().values() {
            c.breaker.tick();
        }
    }

    /// `(tool, state)` of every circuit that is not closed: the only series of
    /// `toolhive_vmcp_tool_circuit_state` (bounded by the tools that are in trouble).
    pub(crate) fn not_closed(&self) -> Vec<(String, BreakerState)> {
        let mut out: Vec<_> = self
            .map
            .load()
            .values()
            .map(|c| (c.name.clone(), c.breaker.state()))
            .filter(|(_, s)| *s != BreakerState::Closed)
            .collect();
        out.sort();
        out
    }
}

/// Backend `backend`'s tool circuit moved by `t`: said in the log and on the trace, the
/// catalog woken when the tool leaves or rejoins it, and an opening's trial scheduled (a
/// withdrawn tool gets no call that would notice its timeout passed).
pub(crate) fn moved(
    backend: &str,
    circuit: &Arc<ToolCircuit>,
    t: &Transition,
    signals: &Arc<Signals>,
    retired: &CancellationToken,
) {
    circuit.moved(t);
    let tool = circuit.name.as_str();
    if t.to == BreakerState::Open {
        tracing::warn!(backend = %backend, tool = %tool, from = %t.from, to = %t.to, reason = %t.cause, "tool circuit opened: the tool is withdrawn, the backend's other tools keep serving");
    } else {
        tracing::info!(backend = %backend, tool = %tool, from = %t.from, to = %t.to, reason = %t.cause, "tool circuit changed");
    }
    super::traced::decision("tool circuit changed", t.to == BreakerState::Open, || {
        vec![
            KeyValue::new("mcp.backend.name", backend.to_string()),
            KeyValue::new("gen_ai.tool.name", tool.to_string()),
            KeyValue::new("hale.circuit.from", t.from.as_str()),
            KeyValue::new("hale.circuit.to", t.to.as_str()),
            KeyValue::new("hale.circuit.reason", t.cause.to_string()),
        ]
    });
    if t.from == BreakerState::Open || t.to == BreakerState::Open {
        signals.changed.notify_one();
    }
    let Some(at) = (t.to == BreakerState::Open)
        .then(|| circuit.breaker.poll_timeout())
        .flatten()
    else {
        return;
    };
    let (backend, circuit, signals, retired) = (
        backend.to_string(),
        circuit.clone(),
        signals.clone(),
        retired.clone(),
    );
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            () = retired.cancelled() => return,
        }
        if let Some(t) = circuit.breaker.handle_timeout() {
            moved(&backend, &circuit, &t, &signals, &retired);
        }
    });
}
