//! The health monitor: one task per upstream, started at launch and cancelled at shutdown.
//!
//! Each task checks its backend on a long-lived probe session every `healthCheckInterval`,
//! spread ±10 % so that checks of many backends do not march in step; feeds the result
//! to the backend's tracker and breaker; logs every transition once
//! (`backend=… from=… to=… reason=…`) and counts it; and wakes the catalog when the
//! backend's routability changed. Requests only ever read the cached state.

use std::time::Duration;

use hale_core::{BreakerState, CheckOutcome, HealthState, Jitter};
use hale_mcp::{Probe, ProbeMethod};
use opentelemetry::KeyValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::health::{Changes, Health};
use super::signals::Signals;
use super::target::Target;

/// How a monitor checks.
#[derive(Clone, Debug)]
pub struct MonitorSettings {
    /// Time between checks (before jitter).
    pub interval: Duration,
    /// Deadline of one check.
    pub timeout: Duration,
    /// `ping` or `tools/list`.
    pub method: ProbeMethod,
}

/// Checks `target` until `cancel`, recording into `health` and telling `signals`. The
/// probe session is closed (DELETE) on the way out.
pub(crate) async fn run(
    target: &Target,
    health: &Health,
    signals: &Signals,
    settings: MonitorSettings,
    cancel: CancellationToken,
) {
    let name = target.name().to_string();
    let config = &target.config;
    let options = target.probe_options();
    let mut probe = Probe::new(&config.url, options, settings.method, settings.timeout);
    let mut jitter = Jitter::new(
        name.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    publish_states(&name, health);
    let peer = super::traced::Peer::of(config);
    let mut first = true;
    loop {
        let started = Instant::now();
        let mut traced = super::traced::HealthTrace::start(&name, &peer, health, settings.method);
        let outcome = tokio::select! {
            () = cancel.cancelled() => break,
            outcome = probe.check() => outcome,
        };
        if let Some(t) = &mut traced {
            t.pinged(&outcome);
        }
        let result = match outcome {
            CheckOutcome::Failure(_) => "failure",
            _ => "success",
        };
        metrics::counter!("toolhive_vmcp_backend_health_checks_total", "backend" => name.clone(), "result" => result)
            .increment(1);
        metrics::histogram!("toolhive_vmcp_backend_health_check_duration_seconds", "backend" => name.clone())
            .record(started.elapsed().as_secs_f64());
        let changes = health.record_check(outcome);
        match traced {
            // What the check changed: events on its span.
            Some(t) => t.finish(health, || report(&name, health, &changes, signals)),
            None => report(&name, health, &changes, signals),
        }
        if first {
            // Readiness counts checked backends: the first check always wakes the catalog.
            first = false;
            signals.changed.notify_one();
        }

        // Sleep until the next check, waking early when an open breaker's timeout ends.
        let next = Instant::now() + jitter.spread(settings.interval, 0.1);
        loop {
            let breaker_due = health.breaker.poll_timeout().map(Instant::from_std);
            let wake = breaker_due.map_or(next, |due| due.min(next));
            tokio::select! {
                () = cancel.cancelled() => {
                    probe.close().await;
                    return;
                }
                // A call opened (or closed) the breaker: its deadline may have changed.
                () = health.breaker_moved.notified() => continue,
                () = tokio::time::sleep_until(wake) => {}
            }
            if wake >= next {
                break;
            }
            report(&name, health, &health.tick(), signals);
        }
    }
    probe.close().await;
}

/// Logs and counts what a check changed, and wakes the catalog if routability changed.
pub(crate) fn report(name: &str, backend: &Health, changes: &Changes, signals: &Signals) {
    if let Some(t) = &changes.health {
        tracing::info!(backend = %name, from = %t.from, to = %t.to, reason = %t.reason, "backend health changed");
        super::traced::decision("backend health changed", false, || {
            vec![
                KeyValue::new("mcp.backend.name", name.to_string()),
                KeyValue::new("hale.health.from", t.from.as_str()),
                KeyValue::new("hale.health.to", t.to.as_str()),
                KeyValue::new("hale.health.reason", t.reason.to_string()),
            ]
        });
        metrics::counter!("toolhive_vmcp_backend_health_transitions_total",
            "backend" => name.to_string(), "from" => t.from.as_str(), "to" => t.to.as_str())
        .increment(1);
    }
    if let Some(t) = &changes.circuit {
        backend.breaker_moved.notify_one();
        tracing::info!(backend = %name, from = %t.from, to = %t.to, reason = %t.cause, "circuit changed");
        super::traced::decision("circuit changed", false, || {
            vec![
                KeyValue::new("mcp.backend.name", name.to_string()),
                KeyValue::new("hale.circuit.from", t.from.as_str()),
                KeyValue::new("hale.circuit.to", t.to.as_str()),
                KeyValue::new("hale.circuit.reason", t.cause.to_string()),
            ]
        });
        metrics::counter!("toolhive_vmcp_backend_circuit_transitions_total",
            "backend" => name.to_string(), "from" => t.from.as_str(), "to" => t.to.as_str())
        .increment(1);
        if t.from == BreakerState::HalfOpen && t.to == BreakerState::Closed {
            // Recovered: what its tools' breakers counted meanwhile was its trouble.
            backend.tool_circuits.reset_open(name, signals);
        }
    }
    let passive = backend.passive_changed();
    if passive {
        match backend.shown() {
            (_, Some(why)) => {
                tracing::warn!(backend = %name, reason = %why, "backend degraded: its real calls fail while its health checks pass");
            }
            (state, None) => {
                tracing::info!(backend = %name, health = %state, "backend's real calls recovered");
            }
        }
    }
    if changes.health.is_some() || changes.circuit.is_some() || passive {
        publish_states(name, backend);
    }
    if changes.routability_changed {
        let routable = backend.routable();
        super::traced::decision(
            if routable {
                "backend restored"
            } else {
                "backend withdrawn"
            },
            !routable,
            || vec![KeyValue::new("mcp.backend.name", name.to_string())],
        );
        if !routable {
            backend.withdrawn.notify_waiters();
        }
        signals.changed.notify_one();
    }
}

/// One-hot state gauges: 1 for the current state, 0 for the others.
pub(crate) fn publish_states(name: &str, backend: &Health) {
    let (health, _) = backend.shown();
    for state in HealthState::ALL {
        metrics::gauge!("toolhive_vmcp_backend_health_state", "backend" => name.to_string(), "state" => state.as_str())
            .set(if state == health { 1.0 } else { 0.0 });
    }
    let circuit = backend.breaker.snapshot().state;
    for state in BreakerState::ALL {
        metrics::gauge!("toolhive_vmcp_backend_circuit_state", "backend" => name.to_string(), "state" => state.as_str())
            .set(if state == circuit { 1.0 } else { 0.0 });
    }
}
