//! The vMCP's metrics, in a test binary of their own: the recorder is process-global.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use hale_testkit::{Fault, ServerConfig, TestServer};
use serde_json::json;

mod common;
use common::*;

#[tokio::test]
async fn metrics_use_the_toolhive_names() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&hale_proxy::DURATION_BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap();
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let flaky = TestServer::start(ServerConfig::default()).await.unwrap();
    // Sessions in a real Redis, so the session store's metrics are there too.
    let redis = hale_testkit::redis::RedisServer::start().unwrap();
    let yaml = format!(
        "{}sessionStorage: {{provider: redis, address: \"{}\", keyPrefix: \"metrics:\"}}\n",
        two_backends(
            &good,
            &flaky,
            "best_effort",
            "    circuitBreaker: {failureThreshold: 2}",
        ),
        redis.address()
    );
    let Started {
        addr, stop, client, ..
    } = start_with(&yaml, Some(handle)).await;
    client
        .call_tool("good_echo", json!({"text": "x"}))
        .await
        .unwrap();
    // Both backends' tools are in the catalog before flaky fails (its calls are then
    // routed to it, and refused once its breaker opens).
    wait_for("both backends listed", async || {
        let (_, status) = get_json(addr, "/status").await;
        (0..2).all(|i| status["backends"][i]["tools"].as_u64() > Some(0))
    })
    .await;
    flaky.set_fault(Some(Fault::Status(503))).await;
    let list = client.list_tools().await.unwrap(); // best_effort: a partial failure
    assert!(list.iter().any(|t| t["name"] == "good_echo"));
    // The list's failure counted towards the breaker's threshold of 2 (and the catalog
    // task may have listed it again meanwhile): within three calls, one is rejected.
    for _ in 0..3 {
        let _ = client.call_tool("flaky_echo", json!({"text": "x"})).await;
    }
    // The open breaker withdraws flaky's tools; the session is told (coalesced, so soon
    // rather than at once).
    wait_for("flaky withdrawn", async || {
        get_text(addr, "/metrics")
            .await
            .1
            .contains("toolhive_vmcp_routable_backends 1")
    })
    .await;
    let (_, text) = get_text(addr, "/metrics").await;
    for needle in [
        "toolhive_vmcp_backends_discovered 2",
        r#"toolhive_vmcp_backend_requests_total{backend="good",method="tools/call",outcome="success"} 1"#,
        r#"toolhive_vmcp_backend_requests_duration_seconds_bucket{backend="good",method="tools/call",le="0.001"}"#,
        r#"toolhive_vmcp_backend_health_state{backend="good",state="healthy"} 1"#,
        r#"toolhive_vmcp_backend_health_checks_total{backend="good",result="success"}"#,
        r#"toolhive_vmcp_backend_health_check_duration_seconds_bucket{backend="good""#,
        r#"toolhive_vmcp_backend_health_transitions_total{backend="good",from="unknown",to="healthy"} 1"#,
        r#"toolhive_vmcp_backend_circuit_state{backend="flaky",state="open"} 1"#,
        r#"toolhive_vmcp_backend_circuit_transitions_total{backend="flaky",from="closed",to="open"} 1"#,
        r#"toolhive_vmcp_backend_circuit_rejections_total{backend="flaky"}"#,
        "toolhive_vmcp_routable_backends 1",
        "toolhive_vmcp_catalog_tools",
        "toolhive_vmcp_list_changed_notifications_total",
        r#"toolhive_vmcp_partial_failures_total{backend="flaky"} 1"#,
        r#"toolhive_vmcp_backend_errors_total{backend="flaky",method="tools/list",category="http_status"}"#,
        r#"toolhive_vmcp_auth_refusals_total{status="401"} 0"#,
        r#"toolhive_vmcp_auth_jwks_fetches_total{outcome="failure"} 0"#,
        r#"toolhive_vmcp_session_store_duration_seconds_bucket{op="save""#,
        r#"toolhive_vmcp_session_store_errors_total{op="load"} 0"#,
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}\n{text}");
    }
    for name in hale_vmcp::METRICS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} is listed in hale_vmcp::METRICS but not exported:\n{text}"
        );
    }
    stop.cancel();
    good.shutdown();
    flaky.shutdown();
}
