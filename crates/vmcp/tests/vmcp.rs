//! The vMCP end to end as a library: real testkit backends, a real MCP client.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient, McpError, TransportKind};
use hale_testkit::{Fault, ServerConfig, TestServer, Transport};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `tools/list_changed`, skipping the resources and prompts variants.
async fn tools_changed(notes: &mut tokio::sync::broadcast::Receiver<hale_mcp::Notification>) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while notes.recv().await.unwrap().method != "notifications/tools/list_changed" {}
    })
    .await
    .expect("notifications/tools/list_changed");
}

fn names(tools: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_dead_backend_is_withdrawn_with_list_changed_and_restored() {
    let weather = TestServer::start(ServerConfig::default()).await.unwrap();
    let search = TestServer::start(ServerConfig {
        transport: Transport::Sse,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let yaml = format!(
        r#"
name: test-vmcp
listen: 127.0.0.1:0
backends:
  - {{name: weather, url: "{}"}}
  - {{name: search, url: "{}", transport: sse}}
operational:
  failureHandling:
    healthCheckInterval: 200ms
    healthCheckTimeout: 150ms
    unhealthyThreshold: 2
"#,
        weather.url(),
        search.url()
    );
    let config = VmcpConfig::from_yaml("test.yaml", &yaml).unwrap();
    let vmcp = Vmcp::bind(config, None).await.unwrap();
    let addr = vmcp.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(vmcp.run(stop.clone()));

    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    let options = ClientOptions {
        transport: TransportKind::StreamableHttp,
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let client = McpClient::connect(&format!("http://{addr}/mcp"), options)
        .await
        .unwrap();
    assert_eq!(client.server_info().await.server_info["name"], "test-vmcp");
    let tools = client.list_tools().await.unwrap();
    let all = names(&tools);
    assert!(
        all.contains(&"weather_echo".to_string()) && all.contains(&"search_echo".to_string()),
        "{all:?}"
    );
    let echo = client
        .call_tool("search_echo", json!({"text": "via vmcp"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "via vmcp");

    let (_, status) = get_json(addr, "/status").await;
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["backends"][1]["transport"], "sse");

    // The search backend dies: its tools go, and the client hears about it.
    let mut notes = client.notifications();
    tokio::time::sleep(Duration::from_millis(300)).await; // the GET stream is up
    search.set_fault(Some(Fault::Down)).await;
    tools_changed(&mut notes).await;
    let after = names(&client.list_tools().await.unwrap());
    assert!(!after.iter().any(|n| n.starts_with("search_")), "{after:?}");
    assert!(after.contains(&"weather_echo".to_string()));
    let started = std::time::Instant::now();
    let err = client
        .call_tool("search_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    match &err {
        McpError::Rpc { message, data, .. } => {
            assert!(
                message.contains("backend 'search' is unavailable"),
                "{message}"
            );
            let data = data.as_ref().unwrap();
            assert_eq!(data["backend"], "search");
            assert_eq!(data["health"], "unhealthy");
        }
        other => panic!("{other:?}"),
    }
    let (_, health) = get_json(addr, "/api/backends/health").await;
    assert_eq!(health["summary"]["unhealthy"], 1);
    assert_eq!(get_json(addr, "/status").await.1["phase"], "Degraded");

    // It comes back: the tools return, and the client is told again.
    search.set_fault(None).await;
    tools_changed(&mut notes).await;
    wait_for("search tools back", async || {
        names(&client.list_tools().await.unwrap()).contains(&"search_echo".to_string())
    })
    .await;
    let echo = client
        .call_tool("search_echo", json!({"text": "back"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "back");

    client.close().await;
    stop.cancel();
    task.await.unwrap();
    weather.shutdown();
    search.shutdown();
}

async fn start(yaml: &str) -> (std::net::SocketAddr, CancellationToken, McpClient) {
    let config = VmcpConfig::from_yaml("test.yaml", yaml).unwrap();
    let vmcp = Vmcp::bind(config, None).await.unwrap();
    let addr = vmcp.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let client = McpClient::connect(&format!("http://{addr}/mcp"), options)
        .await
        .unwrap();
    (addr, stop, client)
}

fn two_backends(a: &TestServer, b: &TestServer, mode: &str, extra: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
backends:
  - {{name: good, url: "{}"}}
  - {{name: flaky, url: "{}"}}
operational:
  failureHandling:
    healthCheckInterval: 30s
    partialFailureMode: {mode}
{extra}
"#,
        a.url(),
        b.url()
    )
}

#[tokio::test]
async fn fail_and_best_effort_decide_what_a_fan_out_returns_when_one_backend_fails() {
    for mode in ["fail", "best_effort"] {
        let good = TestServer::start(ServerConfig::default()).await.unwrap();
        let flaky = TestServer::start(ServerConfig::default()).await.unwrap();
        let (_addr, stop, client) = start(&two_backends(&good, &flaky, mode, "")).await;
        // Healthy at its first check (the next is 30 s away), failing now.
        flaky.set_fault(Some(Fault::Status(500))).await;
        let result = client.request("tools/list", None).await;
        match mode {
            "fail" => {
                let err = result.unwrap_err();
                let McpError::Rpc { message, .. } = &err else {
                    panic!("{err:?}")
                };
                assert!(
                    message.contains("flaky") && message.contains("500"),
                    "{message}"
                );
            }
            _ => {
                let list = result.unwrap();
                let tools = names(list["tools"].as_array().unwrap());
                assert!(
                    tools.contains(&"good_echo".to_string())
                        && !tools.iter().any(|t| t.starts_with("flaky_")),
                    "{tools:?}"
                );
                let failures = &list["_meta"]["hale/partialFailures"];
                assert_eq!(failures[0]["backend"], "flaky", "{list}");
                assert!(failures[0]["error"].as_str().unwrap().contains("500"));
            }
        }
        stop.cancel();
        good.shutdown();
        flaky.shutdown();
    }
}

#[tokio::test]
async fn failing_calls_open_the_breaker_which_then_fails_fast_and_withdraws_the_tools() {
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let flaky = TestServer::start(ServerConfig::default()).await.unwrap();
    let extra = "    circuitBreaker: {failureThreshold: 2, timeout: 30s}";
    let (addr, stop, client) = start(&two_backends(&good, &flaky, "best_effort", extra)).await;
    assert!(names(&client.list_tools().await.unwrap()).contains(&"flaky_echo".to_string()));
    let mut notes = client.notifications();
    tokio::time::sleep(Duration::from_millis(300)).await;

    flaky.set_fault(Some(Fault::Status(503))).await;
    for _ in 0..2 {
        let err = client
            .call_tool("flaky_echo", json!({"text": "x"}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }
    // Open now: the next call is refused without contacting the backend.
    let seen = flaky.stats().requests;
    let err = client
        .call_tool("flaky_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    let McpError::Rpc { message, data, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("backend 'flaky' is unavailable"),
        "{message}"
    );
    assert_eq!(data.as_ref().unwrap()["circuit"], "open");
    assert!(
        data.as_ref().unwrap()["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        flaky.stats().requests,
        seen,
        "no backend contact while open"
    );
    // And its tools are withdrawn, with a notification.
    tools_changed(&mut notes).await;
    assert!(
        !names(&client.list_tools().await.unwrap())
            .iter()
            .any(|t| t.starts_with("flaky_"))
    );
    let (_, status) = get_json(addr, "/status").await;
    assert_eq!(status["backends"][1]["circuit"]["state"], "open");
    assert!(status["backends"][1]["circuit"]["retryAt"].is_string());
    stop.cancel();
    good.shutdown();
    flaky.shutdown();
}

#[tokio::test]
async fn metrics_use_the_toolhive_names() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&hale_proxy::DURATION_BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap();
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let flaky = TestServer::start(ServerConfig::default()).await.unwrap();
    let config = VmcpConfig::from_yaml(
        "test.yaml",
        &two_backends(
            &good,
            &flaky,
            "best_effort",
            "    circuitBreaker: {failureThreshold: 1}",
        ),
    )
    .unwrap();
    let vmcp = Vmcp::bind(config, Some(handle)).await.unwrap();
    let addr = vmcp.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    client
        .call_tool("good_echo", json!({"text": "x"}))
        .await
        .unwrap();
    flaky.set_fault(Some(Fault::Status(503))).await;
    let _ = client.call_tool("flaky_echo", json!({"text": "x"})).await;
    let _ = client.call_tool("flaky_echo", json!({"text": "x"})).await; // rejected: open
    tokio::time::sleep(Duration::from_millis(200)).await;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    for needle in [
        "toolhive_vmcp_backends_discovered 2",
        r#"toolhive_vmcp_backend_requests_total{backend="good",method="tools/call",outcome="success"} 1"#,
        r#"toolhive_vmcp_backend_errors_total{backend="flaky",method="tools/call",category="http_status"} 1"#,
        r#"toolhive_vmcp_backend_requests_duration_seconds_bucket{backend="good",method="tools/call",le="0.001"}"#,
        r#"toolhive_vmcp_backend_health_state{backend="good",state="healthy"} 1"#,
        r#"toolhive_vmcp_backend_health_checks_total{backend="good",result="success"}"#,
        r#"toolhive_vmcp_backend_health_check_duration_seconds_bucket{backend="good""#,
        r#"toolhive_vmcp_backend_health_transitions_total{backend="good",from="unknown",to="healthy"} 1"#,
        r#"toolhive_vmcp_backend_circuit_state{backend="flaky",state="open"} 1"#,
        r#"toolhive_vmcp_backend_circuit_transitions_total{backend="flaky",from="closed",to="open"} 1"#,
        r#"toolhive_vmcp_backend_circuit_rejections_total{backend="flaky"} 1"#,
        "toolhive_vmcp_routable_backends 1",
        "toolhive_vmcp_catalog_tools",
        "toolhive_vmcp_list_changed_notifications_total",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}\n{text}");
    }
    stop.cancel();
    good.shutdown();
    flaky.shutdown();
}
