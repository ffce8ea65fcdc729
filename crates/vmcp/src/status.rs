//! What the vMCP says about itself: `/readyz`, `/status`, `/api/backends/health`.

use serde_json::{Value, json};

use crate::edge::Edge;
use crate::route::Router;

/// `/readyz`: ready when the first round of checks is done and a backend is routable.
pub(crate) fn readiness(router: &Router, draining: bool) -> (bool, String) {
    if draining {
        return (false, "shutting down".into());
    }
    let upstreams = router.upstreams();
    let total = upstreams.len();
    let checked = upstreams.iter().filter(|u| u.health.checked()).count();
    if total == 0 {
        return (true, "no backends configured".into());
    }
    if checked < total {
        return (
            false,
            format!("first round of health checks: {checked} of {total} backends checked"),
        );
    }
    let routable = upstreams.routable();
    if routable == 0 {
        return (false, format!("none of the {total} backends is routable"));
    }
    (true, format!("{routable} of {total} backends routable"))
}

/// `/status`: the phase and every backend, with its open client sessions; `incoming`
/// names how callers are authenticated.
pub(crate) fn status(edge: &Edge, incoming: &str) -> Value {
    let upstreams = edge.router.upstreams();
    let backends: Vec<Value> = upstreams.iter().map(|u| u.status()).collect();
    let total = backends.len();
    let routable = upstreams.routable();
    let checked = upstreams.iter().filter(|u| u.health.checked()).count();
    let (phase, message) = if checked < total {
        (
            "Pending",
            "waiting for the first round of health checks".to_string(),
        )
    } else if edge.router.in_panic() {
        (
            "Panic",
            format!(
                "only {routable} of {total} backends routable, below panicThreshold: nothing is withdrawn until more recover"
            ),
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
        "name": edge.settings.name,
        "phase": phase,
        "message": message,
        "clientSessions": edge.clients.sessions.len(),
        "listeners": edge.clients.listeners.len(),
        "callsWaitingForInput": edge.calls_waiting_for_input(),
        // What the client-session limits did (each backend's own are in its entry).
        "limits": edge.limit_status(),
        "sessionStorage": match &edge.store {
            None => json!({"provider": "memory"}),
            Some(store) => json!({"provider": "redis", "address": store.address(), "connected": store.connected()}),
        },
        "incomingAuth": incoming,
        "backends": backends,
    })
}

/// `/api/backends/health`, as ToolHive shapes it.
pub(crate) fn backends_health(router: &Router) -> Value {
    let mut summary = json!({"total": 0, "healthy": 0, "degraded": 0, "unhealthy": 0, "unknown": 0, "unauthenticated": 0});
    let mut backends = serde_json::Map::new();
    for u in router.upstreams().iter() {
        summary["total"] = json!(summary["total"].as_u64().unwrap_or(0) + 1);
        // As `/status` shows it: passive health may lower healthy to degraded.
        let health = u.health.shown().0.as_str();
        summary[health] = json!(summary[health].as_u64().unwrap_or(0) + 1);
        let mut s = u.status();
        // ToolHive's shape: no per-session or credential detail here.
        if let Value::Object(m) = &mut s {
            m.remove("sessions");
            m.remove("credentials");
        }
        backends.insert(u.name().to_string(), s);
    }
    json!({"monitoringEnabled": true, "summary": summary, "backends": backends})
}

/// Appends `toolhive_vmcp_tool_circuit_state{backend,tool,state}` to a scrape: a series
/// only for each tool whose own circuit is not closed (1 for its state), so a backend's
/// hundreds of healthy tools cost nothing, and a tool that recovers leaves the scrape.
pub(crate) fn tool_circuit_series(router: &crate::route::Router, text: &mut String) {
    use std::fmt::Write as _;
    let name = "toolhive_vmcp_tool_circuit_state";
    let _ = writeln!(
        text,
        "# HELP {name} Each tool whose own circuit is not closed: 1 for its state (open or half-open). A tool without a series is closed."
    );
    let _ = writeln!(text, "# TYPE {name} gauge");
    for u in router.upstreams().iter() {
        for (tool, state) in u.health.tool_circuits.not_closed() {
            let _ = writeln!(
                text,
                "{name}{{backend=\"{}\",tool=\"{}\",state=\"{}\"}} 1",
                label(u.name()),
                label(&tool),
                state.as_str()
            );
        }
    }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
