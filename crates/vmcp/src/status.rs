//! What the vMCP says about itself: `/readyz`, `/status`, `/api/backends/health`.

use serde_json::{Value, json};

use crate::server::State;

/// `/readyz`: ready when the first round of checks is done and a backend is routable.
pub(crate) fn readiness(state: &State, draining: bool) -> (bool, String) {
    if draining {
        return (false, "shutting down".into());
    }
    let total = state.backends.len();
    let checked = state.first_round.checked();
    if total == 0 {
        return (true, "no backends configured".into());
    }
    if checked < total {
        return (
            false,
            format!("first round of health checks: {checked} of {total} backends checked"),
        );
    }
    let routable = state.backends.iter().filter(|b| b.routable()).count();
    if routable == 0 {
        return (false, format!("none of the {total} backends is routable"));
    }
    (true, format!("{routable} of {total} backends routable"))
}

/// `/status`: the phase and every backend, with its open client sessions.
pub(crate) fn status(state: &State) -> Value {
    let backends: Vec<Value> = state
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut s = b.status();
            s["sessions"] =
                json!(state.backend_sessions[i].load(std::sync::atomic::Ordering::Relaxed));
            // Which credentials it is sent: header names and the token's source, never values.
            if !b.config.credentials.is_empty() {
                s["credentials"] = b.config.credentials.describe();
            }
            s
        })
        .collect();
    let total = backends.len();
    let routable = state.backends.iter().filter(|b| b.routable()).count();
    let (phase, message) = if state.first_round.checked() < total {
        (
            "Pending",
            "waiting for the first round of health checks".to_string(),
        )
    } else if total == 0 || routable == total {
        ("Ready", format!("{routable} of {total} backends routable"))
    } else if routable > 0 {
        (
            "Degraded",
            format!("{routable} of {total} backends routable"),
        )
    } else {
        (
            "Failed",
            format!("none of the {total} backends is routable"),
        )
    };
    json!({
        "name": state.config.name,
        "phase": phase,
        "message": message,
        "clientSessions": state.sessions.len(),
        "listeners": state.listeners.len(),
        "callsWaitingForInput": state.bridge_waiting(),
        "incomingAuth": state.config.incoming_auth.as_ref().map_or("none (loopback only)", |a| a.kind()),
        "backends": backends,
    })
}

/// `/api/backends/health`, as ToolHive shapes it.
pub(crate) fn backends_health(state: &State) -> Value {
    let mut summary = json!({"total": 0, "healthy": 0, "degraded": 0, "unhealthy": 0, "unknown": 0, "unauthenticated": 0});
    let mut backends = serde_json::Map::new();
    for b in &state.backends {
        summary["total"] = json!(summary["total"].as_u64().unwrap_or(0) + 1);
        let health = b.health().as_str();
        summary[health] = json!(summary[health].as_u64().unwrap_or(0) + 1);
        backends.insert(b.config.name.clone(), b.status());
    }
    json!({"monitoringEnabled": true, "summary": summary, "backends": backends})
}
