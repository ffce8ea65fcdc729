//! The breaker on the request path against a wiremock backend whose every request is
//! counted: open means no contact at all, half-open lets exactly one trial through.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hale_mcp::McpError;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod common;
use common::*;

/// A stateless MCP server with one tool, `lookup`, whose calls fail with 503 while
/// `failing` is set and otherwise answer after `delay`.
#[derive(Clone, Default)]
struct Backend {
    failing: Arc<AtomicBool>,
    slow: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Respond for Backend {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(id) = body.get("id").cloned() else {
            return ResponseTemplate::new(202); // a notification
        };
        let result = match body["method"].as_str().unwrap_or_default() {
            "initialize" => json!({"protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "wiremock", "version": "0"}}),
            "tools/list" => json!({"tools": [{"name": "lookup", "description": "Looks up.",
                "inputSchema": {"type": "object"}}]}),
            "tools/call" => {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.failing.load(Ordering::SeqCst) {
                    return ResponseTemplate::new(503).set_body_string("overloaded");
                }
                let answer = ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0",
                    "id": id, "result": {"content": [{"type": "text", "text": "found"}]}}));
                return if self.slow.load(Ordering::SeqCst) {
                    answer.set_delay(Duration::from_millis(400))
                } else {
                    answer
                };
            }
            _ => json!({}),
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }
}

fn rpc_data(err: &McpError) -> Value {
    match err {
        McpError::Rpc { data, .. } => data.clone().unwrap_or_default(),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn open_refuses_without_contact_and_half_open_admits_exactly_one_trial() {
    let server = MockServer::start().await;
    let backend = Backend::default();
    Mock::given(method("POST"))
        .respond_with(backend.clone())
        .mount(&server)
        .await;
    // One probe at start, then none for a minute: only calls move the breaker. Panic
    // mode off: the one backend's open circuit withdraws its tool.
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: wm, url: \"{}/mcp\"}}\noperational:\n  failureHandling:\n    healthCheckInterval: 60s\n    panicThreshold: 0%\n    circuitBreaker: {{failureThreshold: 2, timeout: 500ms, maxTimeout: 10s, halfOpenMaxRequests: 1}}\n",
        server.uri()
    );
    let Started {
        addr,
        stop,
        client,
        vmcp,
    } = start_with(&yaml, None).await;
    assert_eq!(names(&client.list_tools().await.unwrap()), ["wm_lookup"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut notes = client.notifications();

    // Two failed calls open it.
    backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let err = client.call_tool("wm_lookup", json!({})).await.unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }
    assert_eq!(backend.calls.load(Ordering::SeqCst), 2);

    // Open: refused at once, and the backend never hears of it.
    for _ in 0..3 {
        let err = client.call_tool("wm_lookup", json!({})).await.unwrap_err();
        assert_eq!(rpc_data(&err)["circuit"], "open", "{err}");
    }
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        2,
        "no contact while open"
    );
    tools_changed(&mut notes).await; // withdrawn

    // After the open timeout the breaker turns half-open by itself (the monitor wakes for
    // it), which makes the backend routable again: its tool comes back.
    backend.failing.store(false, Ordering::SeqCst);
    backend.slow.store(true, Ordering::SeqCst);
    tools_changed(&mut notes).await;
    // (No list here: a list's refresh of the backend would itself be the trial.)
    assert_eq!(
        vmcp.upstreams()
            .get("wm")
            .unwrap()
            .health
            .breaker
            .snapshot()
            .state
            .as_str(),
        "half-open"
    );

    // Half-open with one slot: of two calls at once (from two sessions), one is the
    // trial (slow, it succeeds) and the other is refused without contact.
    let other = hale_mcp::McpClient::connect(
        &format!("http://{addr}/mcp"),
        hale_mcp::ClientOptions::default(),
    )
    .await
    .unwrap();
    let (first, second) = tokio::join!(client.call_tool("wm_lookup", json!({})), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.call_tool("wm_lookup", json!({})).await
    });
    assert_eq!(first.unwrap()["content"][0]["text"], "found");
    let err = second.unwrap_err();
    assert_eq!(rpc_data(&err)["circuit"], "half-open", "{err}");
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        3,
        "exactly one trial reached the backend"
    );

    // The trial's success closed it: calls flow again.
    backend.slow.store(false, Ordering::SeqCst);
    assert_eq!(
        vmcp.upstreams()
            .get("wm")
            .unwrap()
            .health
            .breaker
            .snapshot()
            .state
            .as_str(),
        "closed"
    );
    for _ in 0..3 {
        client.call_tool("wm_lookup", json!({})).await.unwrap();
    }
    assert_eq!(backend.calls.load(Ordering::SeqCst), 6);
    stop.cancel();
}
