//! A request to an upstream through its breaker: admission, the caller's client, the
//! outcome fed back to the breaker (and, for list refreshes, the health tracker), and the
//! request metrics.

use std::sync::Arc;

use hale_core::CallOutcome;
use hale_mcp::{CallHooks, McpClient, McpError};
use serde_json::Value;

use super::{Changes, Owner, Upstream};

/// Why a call to a backend failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The breaker refused it: the backend was not contacted.
    Refused(String),
    /// The backend (or the way to it) failed, or answered with a JSON-RPC error.
    Backend(McpError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(why) => f.write_str(why),
            CallError::Backend(e) => e.fmt(f),
        }
    }
}

impl Upstream {
    /// Calls the backend through its breaker on `owner`'s behalf; the outcome feeds the
    /// breaker. What the backend sends while it answers goes to `hooks`.
    pub(crate) async fn call(
        self: &Arc<Self>,
        owner: Option<&Arc<dyn Owner>>,
        method: &str,
        params: Value,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, CallError> {
        self.guarded(method, false, owner, async |client| match hooks {
            Some(hooks) => client.request_hooked(method, Some(params), hooks).await,
            None => client.request(method, Some(params)).await,
        })
        .await
    }

    /// Runs `op` on the request client if the breaker admits it, and feeds the outcome
    /// to the breaker and the request metrics (labelled `method`), and a failure to the
    /// health tracker too when `feeds_health` (fan-outs).
    pub(super) async fn guarded<T>(
        self: &Arc<Self>,
        method: &str,
        feeds_health: bool,
        owner: Option<&Arc<dyn Owner>>,
        op: impl AsyncFnOnce(Arc<McpClient>) -> Result<T, McpError>,
    ) -> Result<T, CallError> {
        let permit = match self.health.breaker.try_acquire() {
            Ok(p) => p,
            Err(rejected) => {
                metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => self.name().to_string()).increment(1);
                return Err(CallError::Refused(format!(
                    "circuit {} (retry after {:?})",
                    rejected.state, rejected.retry_after
                )));
            }
        };
        let started = tokio::time::Instant::now();
        let result = match self.client_for(owner).await {
            Ok(client) => {
                let replaced = client.sessions_replaced();
                let result = op(client.clone()).await;
                let lost = client.sessions_replaced().saturating_sub(replaced);
                if owner.is_some()
                    && let Err(e) = &result
                    && e.is_refused_handshake()
                {
                    // The backend no longer takes the handshake (upgraded in place to
                    // 2026-07-28): its clients go through the shared session from now on.
                    self.set_modern_only();
                }
                if lost > 0 && owner.is_some() {
                    // The backend lost this client's session; hale-mcp opened a new
                    // one for this client alone.
                    metrics::counter!("toolhive_vmcp_backend_sessions_total", "backend" => self.name().to_string(), "event" => "lost").increment(lost);
                }
                result
            }
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => e.call_outcome(),
        };
        self.metrics.record(
            self.name(),
            method,
            started.elapsed().as_secs_f64(),
            outcome == CallOutcome::Success,
        );
        if feeds_health
            && let Err(e) = &result
            && e.category().is_some()
        {
            // A list refresh is a fan-out: its failure counts with the tracker too.
            let changes = self
                .health
                .record_fan_out_failure(e.check_outcome(started.elapsed()));
            self.report(&changes);
        }
        if let Err(e) = &result
            && let Some(category) = e.category()
        {
            metrics::counter!("toolhive_vmcp_backend_errors_total", "backend" => self.name().to_string(), "method" => method.to_string(), "category" => category.as_str()).increment(1);
            // A transport failure may also have lost the shared session: start afresh
            // next time. (A client's own backend session re-initializes by itself when
            // the backend says it lost it.)
            if owner.is_none() {
                self.shared.reset();
            }
        }
        let was_routable = self.routable();
        if let Some(t) = permit.record(outcome) {
            let changes = Changes {
                health: None,
                circuit: Some(t),
                routability_changed: was_routable != self.routable(),
            };
            self.report(&changes);
        }
        result.map_err(CallError::Backend)
    }
}
