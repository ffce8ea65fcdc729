//! How failures are judged (issue "Live configuration and operator controls"): panic mode
//! when too few backends are routable, a grace period before a withdrawal, `isError`
//! results counted only when asked, and a 429 honoured rather than taken for "down".

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::time::Duration;

use hale_testkit::{Fault, ServerConfig, TestServer};
use serde_json::json;

async fn servers(n: usize) -> Vec<TestServer> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TestServer::start(ServerConfig::default()).await.unwrap());
    }
    v
}

/// Backends `b0`, `b1`, … checked every 100 ms, withdrawn at the first failed check.
fn yaml(servers: &[TestServer], failure_handling: &str) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for (i, s) in servers.iter().enumerate() {
        y.push_str(&format!("  - {{name: b{i}, url: \"{}\"}}\n", s.url()));
    }
    y.push_str(&format!(
        "operational:\n  failureHandling: {{healthCheckInterval: 100ms, healthCheckTimeout: 50ms, unhealthyThreshold: 1{failure_handling}}}\n"
    ));
    y
}

async fn phase(addr: std::net::SocketAddr) -> String {
    get_json(addr, "/status").await.1["phase"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn with_three_of_four_backends_down_panic_mode_withdraws_nothing() {
    let kit = servers(4).await;
    let s = start_with(&yaml(&kit, ""), None).await;
    let c = &s.client;
    let all = names(&c.list_tools().await.unwrap());
    assert_eq!(all.iter().filter(|t| t.ends_with("_echo")).count(), 4);
    let mut notes = c.notifications();

    // One down of four: 75 % routable, above the default 50 %: withdrawn as usual.
    kit[1].set_fault(Some(Fault::Down)).await;
    tools_changed_until(c, &mut notes, |t| !t.contains(&"b1_echo".into())).await;
    assert_eq!(phase(s.addr).await, "Degraded");

    // Three down: 25 % routable. The gateway trusts nothing: every tool is back.
    kit[2].set_fault(Some(Fault::Down)).await;
    kit[3].set_fault(Some(Fault::Down)).await;
    wait_for("panic mode", async || phase(s.addr).await == "Panic").await;
    let now = tools_changed_until(c, &mut notes, |t| t.contains(&"b1_echo".into())).await;
    for i in 0..4 {
        assert!(now.contains(&format!("b{i}_echo")), "{now:?}");
    }
    // The live backend answers; a dead one is tried and fails with an error of its own
    // (never "unknown tool").
    c.call_tool("b0_echo", json!({"text": "alive"}))
        .await
        .unwrap();
    let e = c
        .call_tool("b2_echo", json!({"text": "x"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("backend 'b2' is unavailable"), "{e}");

    // Two back: 75 %, panic over, the one still down is withdrawn again.
    kit[1].set_fault(None).await;
    kit[2].set_fault(None).await;
    wait_for("panic over", async || phase(s.addr).await == "Degraded").await;
    let now = tools_changed_until(c, &mut notes, |t| !t.contains(&"b3_echo".into())).await;
    assert!(now.contains(&"b1_echo".into()) && now.contains(&"b2_echo".into()));
    s.stop.cancel();
}

#[tokio::test]
async fn with_panic_mode_off_three_dead_backends_are_withdrawn() {
    let kit = servers(4).await;
    let s = start_with(&yaml(&kit, ", panicThreshold: 0%"), None).await;
    let c = &s.client;
    c.list_tools().await.unwrap();
    let mut notes = c.notifications();
    for k in &kit[1..] {
        k.set_fault(Some(Fault::Down)).await;
    }
    let now = tools_changed_until(c, &mut notes, |t| {
        !t.iter().any(|n| n != "b0_echo" && n.ends_with("_echo"))
    })
    .await;
    assert!(now.contains(&"b0_echo".into()));
    assert_eq!(phase(s.addr).await, "Degraded");
    s.stop.cancel();
}

#[tokio::test]
async fn a_grace_period_keeps_a_failed_backends_tools_until_it_ends() {
    let kit = servers(2).await;
    let s = start_with(
        &yaml(&kit, ", panicThreshold: 0%, withdrawalGracePeriod: 1500ms"),
        None,
    )
    .await;
    let c = &s.client;
    c.list_tools().await.unwrap();
    let mut notes = c.notifications();
    kit[1].set_fault(Some(Fault::Down)).await;
    let down = std::time::Instant::now();
    wait_for("b1 unroutable", async || {
        !s.vmcp.upstreams().get("b1").unwrap().routable()
    })
    .await;
    // Within the grace period: still listed; a call fails fast with the reason.
    assert!(names(&c.list_tools().await.unwrap()).contains(&"b1_echo".into()));
    let e = c
        .call_tool("b1_echo", json!({"text": "x"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("backend 'b1' is unavailable"), "{e}");
    // Then withdrawn, with list_changed.
    tools_changed_until(c, &mut notes, |t| !t.contains(&"b1_echo".into())).await;
    assert!(
        down.elapsed() >= Duration::from_millis(1400),
        "withdrawn after {:?}, before the grace period ended",
        down.elapsed()
    );
    s.stop.cancel();
}

#[tokio::test]
async fn is_error_results_count_as_failures_only_when_configured() {
    let kit = servers(1).await;
    let breaker = ", circuitBreaker: {failureThreshold: 2, timeout: 30s}";
    for (counts, extra) in [(false, ""), (true, ", toolErrorsAreFailures: true")] {
        let yaml = yaml(&kit, &format!("{breaker}{extra}"))
            .replace("healthCheckInterval: 100ms", "healthCheckInterval: 30s");
        let s = start_with(&yaml, None).await;
        let c = &s.client;
        for _ in 0..3 {
            // Still the backend's own answer: the client sees the tool's error.
            match c.call_tool("b0_test_error_handling", json!({})).await {
                Ok(r) => assert_eq!(r["isError"], true),
                Err(e) => assert!(counts, "refused with isError not counted: {e}"),
            }
        }
        // The failing tool's own circuit opens. (Whether the backend's opens too depends
        // on whether a list refresh succeeded between the calls: both count to 2 here.)
        let status = get_json(s.addr, "/status").await.1;
        let tools = &status["backends"][0]["toolCircuits"];
        let open = tools[0]["tool"] == "test_error_handling" && tools[0]["state"] == "open";
        assert_eq!(
            open, counts,
            "toolErrorsAreFailures {counts}: tool circuits {tools}"
        );
        s.stop.cancel();
    }
}

#[tokio::test]
async fn a_429_is_honoured_not_taken_for_down() {
    let kit = servers(1).await;
    let yaml = yaml(&kit, "").replace("healthCheckInterval: 100ms", "healthCheckInterval: 1s");
    let s = start_with(&yaml, None).await;
    let c = &s.client;
    c.call_tool("b0_echo", json!({"text": "x"})).await.unwrap();

    kit[0].set_fault(Some(Fault::Status(429))).await;
    let e = c
        .call_tool("b0_echo", json!({"text": "x"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("429") && e.contains("retry in 2 s"), "{e}");
    // Asked to wait: the next call is not sent at all.
    let seen = kit[0].stats().requests;
    let e = c
        .call_tool("b0_echo", json!({"text": "x"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("retry in"), "{e}");
    assert_eq!(
        kit[0].stats().requests,
        seen,
        "a call went out during Retry-After"
    );
    // Not down: health checks answered 429 count as alive, the breaker stays closed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = get_json(s.addr, "/status").await.1;
    assert_eq!(status["backends"][0]["health"], "healthy", "{status}");
    assert_eq!(status["backends"][0]["circuit"]["state"], "closed");
    assert!(names(&c.list_tools().await.unwrap()).contains(&"b0_echo".into()));

    // The backend relents; once the wait is over calls go through again.
    kit[0].set_fault(None).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.call_tool("b0_echo", json!({"text": "again"}))
        .await
        .unwrap();
    s.stop.cancel();
}
