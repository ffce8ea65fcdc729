//! The health monitor against live testkit backends: withdrawal at the threshold,
//! restoration, one log/metric per transition, and the catalog woken each time.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::sync::Arc;
use std::time::Duration;

use hale_core::{BreakerConfig, BreakerState, HealthConfig, HealthState};
use hale_mcp::{ProbeMethod, TransportKind};
use hale_testkit::{Fault, ServerConfig, TestServer};
use hale_vmcp::config::BackendConfig;
use hale_vmcp::upstream::{Settings, Signals, Upstream};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(100);

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_backend_is_withdrawn_at_the_threshold_and_restored_when_it_answers() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let signals = Arc::new(Signals::default());
    let upstream = Upstream::new(
        Settings {
            backend: BackendConfig {
                name: "weather".into(),
                url: server.url(),
                transport: TransportKind::StreamableHttp,
                credentials: hale_mcp::Credentials::default(),
                tls: None,
                stdio: None,
                failure_codes: Default::default(),
            },
            request_timeout: Duration::from_secs(5),
            max_sessions: 10,
            max_list_items: 100,
            probe_method: ProbeMethod::Ping,
            health: HealthConfig {
                check_interval: INTERVAL,
                check_timeout: Duration::from_millis(80),
                unhealthy_threshold: 3,
                ..HealthConfig::default()
            },
            breaker: BreakerConfig {
                failure_threshold: 100,
                ..BreakerConfig::default()
            },
            breaker_enabled: true,
            per_tool: true,
            retry_budget: 0.2,
            tool_errors_are_failures: false,
        },
        0,
        signals.clone(),
    )
    .unwrap();
    let backend = &upstream.health;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(upstream.clone().monitor(cancel.clone()));

    signals.changed.notified().await;
    assert!(upstream.health.checked());
    assert_eq!(backend.health(), HealthState::Healthy);
    assert!(backend.routable());

    server.set_fault(Some(Fault::Down)).await;
    let went_down = std::time::Instant::now();
    wait_until("unhealthy", || backend.health() == HealthState::Unhealthy).await;
    // Three failed checks ≈ three intervals (±10 % jitter), never fewer than two.
    let took = went_down.elapsed();
    assert!(
        took >= INTERVAL * 2 - INTERVAL / 5,
        "{took:?}: withdrawn before the threshold"
    );
    assert!(!backend.routable());
    assert_eq!(
        upstream.status()["lastError"]["category"],
        "connection_refused"
    );

    server.set_fault(None).await;
    wait_until("healthy again", || backend.health() == HealthState::Healthy).await;
    assert!(backend.routable());
    assert_eq!(backend.breaker.snapshot().state, BreakerState::Closed);
    cancel.cancel();
    task.await.unwrap();

    let snapshot = snapshots.snapshot().into_vec();
    let counter = |name: &str, labels: &[(&str, &str)]| -> u64 {
        snapshot
            .iter()
            .filter(|(k, _, _, _)| k.key().name() == name)
            .filter(|(k, _, _, _)| {
                labels
                    .iter()
                    .all(|(l, v)| k.key().labels().any(|x| x.key() == *l && x.value() == *v))
            })
            .map(|(_, _, _, v)| {
                if let DebugValue::Counter(c) = v {
                    *c
                } else {
                    0
                }
            })
            .sum()
    };
    let transitions = "toolhive_vmcp_backend_health_transitions_total";
    assert_eq!(
        counter(transitions, &[("from", "unknown"), ("to", "healthy")]),
        1
    );
    assert_eq!(
        counter(transitions, &[("from", "healthy"), ("to", "unhealthy")]),
        1,
        "logged and counted once"
    );
    assert_eq!(
        counter(transitions, &[("from", "unhealthy"), ("to", "healthy")]),
        1
    );
    assert!(
        counter(
            "toolhive_vmcp_backend_health_checks_total",
            &[("result", "failure")]
        ) >= 3
    );
    assert!(
        counter(
            "toolhive_vmcp_backend_health_checks_total",
            &[("result", "success")]
        ) >= 2
    );
    let healthy_gauge = snapshot.iter().find(|(k, _, _, _)| {
        k.key().name() == "toolhive_vmcp_backend_health_state"
            && k.key()
                .labels()
                .any(|l| l.key() == "state" && l.value() == "healthy")
    });
    assert!(
        matches!(healthy_gauge.map(|g| &g.3), Some(DebugValue::Gauge(v)) if v.into_inner() == 1.0)
    );
    server.shutdown();
}
