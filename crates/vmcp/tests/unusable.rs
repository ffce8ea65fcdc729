//! A backend that answers but cannot be used (spec §4, §10; issue "reliability"): one
//! that refuses the handshake (a 2026-07-28-only server answering `initialize` with 400
//! and -32022), one that lists more tools than `maxToolsPerBackend`. Each is withdrawn
//! with its reason in `/status`, and in `fail` mode never takes the other backends' lists
//! down.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use hale_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn yaml(good: &str, bad: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: good, url: \"{good}\"}}\n  - {{name: bad, url: \"{bad}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: 300ms, healthCheckTimeout: 200ms, partialFailureMode: fail}}\n{extra}"
    )
}

async fn tools(client: &hale_mcp::McpClient) -> Vec<String> {
    client
        .list_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_backend_that_refuses_the_handshake_is_withdrawn_not_healthy_with_no_tools() {
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let modern_only = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "jsonrpc": "2.0", "id": 1,
            "error": {"code": -32022, "message": "Unsupported protocol version",
                      "data": {"supported": ["2026-07-28"], "requested": "2025-11-25"}}})))
        .mount(&modern_only)
        .await;
    let bad = format!("{}/mcp", modern_only.uri());
    let config = hale_vmcp::VmcpConfig::from_yaml("t.yaml", &yaml(&good.url(), &bad, "")).unwrap();
    let vmcp = hale_vmcp::Vmcp::bind(config, None).await.unwrap();
    let addr = vmcp.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    // Its checks fail (a refused handshake is a protocol failure): unhealthy, not
    // "healthy with 0 tools".
    wait_for("the modern-only backend to be unhealthy", async || {
        get_json(addr, "/status").await.1["backends"][1]["health"] == "unhealthy"
    })
    .await;
    let (_, status) = get_json(addr, "/status").await;
    let bad_status = &status["backends"][1];
    assert_eq!(bad_status["lastError"]["category"], "protocol", "{status}");
    assert!(
        bad_status["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("-32022"),
        "{status}"
    );
    // `fail` mode: the other backend's tools are listed, not an error for every client.
    let client = hale_mcp::McpClient::connect(&format!("http://{addr}/mcp"), Default::default())
        .await
        .unwrap();
    let names = tools(&client).await;
    assert!(names.contains(&"good_echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("bad_")), "{names:?}");
    stop.cancel();
    good.shutdown();
}

#[tokio::test]
async fn a_backend_listing_more_than_the_limit_is_withdrawn_with_its_reason() {
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let big = TestServer::start(ServerConfig::default()).await.unwrap();
    for n in 0..40 {
        big.add_tool(&format!("extra_{n}"));
    }
    let Started {
        addr, stop, client, ..
    } = start_with(
        &yaml(&good.url(), &big.url(), "  maxToolsPerBackend: 30\n"),
        None,
    )
    .await;
    let names = tools(&client).await;
    assert!(names.contains(&"good_echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("bad_")), "{names:?}");
    let echo = client
        .call_tool("good_echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "still here");
    let (_, status) = get_json(addr, "/status").await;
    let why = status["backends"][1]["unusable"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("more than 30"), "{status}");
    assert_eq!(
        status["backends"][1]["health"], "healthy",
        "it answers: {status}"
    );
    // A call to one of its tools says why it is unavailable.
    let err = client.call_tool("bad_echo", json!({})).await.unwrap_err();
    assert!(
        err.to_string().contains("unavailable") || err.to_string().contains("unknown"),
        "{err}"
    );
    // Back under the limit, it returns at a later listing.
    for n in 0..40 {
        big.remove_tool(&format!("extra_{n}"));
    }
    wait_for("the backend to be listed again", async || {
        get_json(addr, "/status").await.1["backends"][1]["unusable"] == Value::Null
    })
    .await;
    stop.cancel();
    good.shutdown();
    big.shutdown();
}
