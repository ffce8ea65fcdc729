//! Gray failures (issue 29): a backend written for these tests whose tools fail at set
//! rates, crawl, or refuse bad arguments, behind the vMCP. A consecutive-failure count
//! misses all of these; rate windows and per-tool breakers must not.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hale_mcp::McpError;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod common;
use common::*;

/// Fails two calls in five, never two in a row (also across cycles): 40 % that a
/// consecutive count of two or more never sees.
fn fails_40_percent(n: u64) -> bool {
    matches!(n % 5, 0 | 2)
}

/// A stateless MCP server. Its tools:
/// - `steady`: always answers;
/// - `flaky`: its own calls fail 40 % of the time (JSON-RPC -32603), never twice in a row;
/// - `strict`: refuses every call as a bad argument (-32602);
/// - `oops`: answers every call with `isError: true`;
/// - `crawl`: answers after 3 s;
/// - `t0`…`t9`: together fail 40 % of their calls (one count across the ten);
/// - `lookup` (annotated read-only) and `write` (not annotated): every other call of
///   each is answered HTTP 503, starting with the first.
#[derive(Clone, Default)]
struct Gray {
    /// Calls per tool.
    calls: Arc<Mutex<HashMap<String, u64>>>,
    /// Calls to any of `t0`…`t9`.
    shared: Arc<AtomicU64>,
}

impl Gray {
    fn count(&self, tool: &str) -> u64 {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(tool.to_string()).or_default();
        *n += 1;
        *n - 1
    }

    fn calls(&self, tool: &str) -> u64 {
        self.calls.lock().unwrap().get(tool).copied().unwrap_or(0)
    }
}

fn tools() -> Vec<Value> {
    let mut names: Vec<String> = ["steady", "flaky", "strict", "oops", "crawl", "write"]
        .map(String::from)
        .to_vec();
    names.extend((0..10).map(|i| format!("t{i}")));
    let mut tools: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "description": "A tool.", "inputSchema": {"type": "object"}}))
        .collect();
    tools.push(
        json!({"name": "lookup", "description": "Reads.", "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": true}}),
    );
    tools
}

impl Respond for Gray {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(id) = body.get("id").cloned() else {
            return ResponseTemplate::new(202); // a notification
        };
        let answer = |result: Value| {
            ResponseTemplate::new(200)
                .set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
        };
        let error = |code: i64, message: &str| {
            ResponseTemplate::new(200).set_body_json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
            )
        };
        let ok = json!({"content": [{"type": "text", "text": "done"}]});
        match body["method"].as_str().unwrap_or_default() {
            "initialize" => answer(json!({"protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "gray", "version": "0"}})),
            "tools/list" => answer(json!({"tools": tools()})),
            "tools/call" => {
                let tool = body["params"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let n = self.count(&tool);
                match tool.as_str() {
                    "flaky" if fails_40_percent(n) => error(-32603, "upstream API failed"),
                    "strict" => error(-32602, "invalid arguments: 'city' is required"),
                    "oops" => answer(
                        json!({"isError": true, "content": [{"type": "text", "text": "no such city"}]}),
                    ),
                    "crawl" => answer(ok).set_delay(Duration::from_secs(3)),
                    "lookup" | "write" if n.is_multiple_of(2) => {
                        ResponseTemplate::new(503).set_body_string("overloaded")
                    }
                    t if t.starts_with('t')
                        && fails_40_percent(self.shared.fetch_add(1, Ordering::SeqCst)) =>
                    {
                        error(-32603, "database unavailable")
                    }
                    _ => answer(ok),
                }
            }
            _ => answer(json!({})),
        }
    }
}

struct Setup {
    gray: Gray,
    s: Started,
    _server: MockServer,
}

/// The vMCP over a gray backend named `name` (each test its own: they share one metrics
/// recorder), with `breaker` as its `circuitBreaker` block. Health
/// checks once a minute: only real calls move the breakers. Panic mode off; the admin API
/// on (loopback, anonymous).
async fn setup(name: &str, breaker: &str) -> Setup {
    let server = MockServer::start().await;
    let gray = Gray::default();
    Mock::given(method("POST"))
        .respond_with(gray.clone())
        .mount(&server)
        .await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: {name}, url: \"{}/mcp\"}}\noperational:\n  admin: {{type: anonymous}}\n  failureHandling:\n    healthCheckInterval: 60s\n    panicThreshold: 0%\n    circuitBreaker: {breaker}\n",
        server.uri()
    );
    let s = start_with(&yaml, Some(metrics_handle())).await;
    assert!(names(&s.client.list_tools().await.unwrap()).contains(&format!("{name}_flaky")));
    Setup {
        gray,
        s,
        _server: server,
    }
}

fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .unwrap()
        })
        .clone()
}

fn rpc(err: &McpError) -> (i64, Value, String) {
    match err {
        McpError::Rpc {
            code,
            data,
            message,
            ..
        } => (*code, data.clone().unwrap_or_default(), message.clone()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn backend_status(addr: std::net::SocketAddr) -> Value {
    get_json(addr, "/status").await.1["backends"][0].clone()
}

#[tokio::test]
async fn a_tool_failing_40_percent_never_twice_in_a_row_is_isolated_by_its_rate() {
    let Setup { gray, s, .. } = setup("gray", "{failureRateThreshold: 30%, timeout: 1s}").await;
    let c = &s.client;
    let mut notes = c.notifications();
    let mut refused = None;
    for i in 1..=50 {
        // Its sibling serves throughout.
        c.call_tool("gray_steady", json!({})).await.unwrap();
        match c.call_tool("gray_flaky", json!({})).await {
            Ok(_) => {}
            Err(e) => match rpc(&e) {
                (-32603, ..) => {} // the tool's own failure, passed on as it is
                answer => {
                    refused = Some((i, answer));
                    break;
                }
            },
        }
    }
    let Some((at, (code, data, message))) = refused else {
        panic!("a tool failing 40 % was not isolated in 50 calls");
    };
    assert_eq!(code, -31001, "{message}");
    assert_eq!(data["reason"], "tool_circuit_open");
    assert_eq!(data["tool"], "gray_flaky");
    assert_eq!(data["backend"], "gray");
    assert!(
        data["retryAfterSeconds"].as_u64().is_some_and(|s| s > 0),
        "{data}"
    );
    assert!(
        message.contains("tool 'gray_flaky' is unavailable") && message.contains("% of the last"),
        "{message}"
    );
    // Refused fast: the backend never heard of the refused call. Exactly when the
    // definition says: failures at calls 1, 3, 6, 8, 11; at the 11th, 5 of 11 (45 %) with
    // minimumCalls (10) reached.
    assert_eq!(gray.calls("flaky"), at - 1);
    assert_eq!(at, 12);
    // The rate saw it, not a consecutive count: it never failed twice in a row.
    let status = backend_status(s.addr).await;
    let circuits = &status["toolCircuits"];
    assert_eq!(circuits.as_array().unwrap().len(), 1, "{circuits}");
    assert_eq!(circuits[0]["tool"], "flaky");
    assert_eq!(circuits[0]["state"], "open");
    assert!(circuits[0]["retryAt"].is_string(), "{circuits}");
    let reason = circuits[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("% of the last") && reason.contains("calls failed"),
        "{reason}"
    );
    // The backend keeps serving: its own breaker closed, its other tools listed; but
    // passive health says its real calls fail although its checks pass.
    assert_eq!(status["circuit"]["state"], "closed");
    assert_eq!(status["health"], "degraded", "{status}");
    let why = status["reason"].as_str().unwrap();
    assert!(
        why.contains("% of the last") && why.contains("health checks pass"),
        "{why}"
    );
    tools_changed_until(c, &mut notes, |t| {
        !t.contains(&"gray_flaky".into()) && t.contains(&"gray_steady".into())
    })
    .await;
    c.call_tool("gray_steady", json!({})).await.unwrap();
    let (_, metrics) = get_text(s.addr, "/metrics").await;
    assert!(
        metrics.contains(
            r#"toolhive_vmcp_tool_circuit_state{backend="gray",tool="flaky",state="open"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"toolhive_vmcp_backend_health_state{backend="gray",state="degraded"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"tool="steady""#),
        "a closed tool is no series"
    );

    // Its open timeout (1 s) passes: listed again for its trial, which succeeds (the
    // 12th call of its pattern), and the circuit closes.
    tools_changed_until(c, &mut notes, |t| t.contains(&"gray_flaky".into())).await;
    c.call_tool("gray_flaky", json!({})).await.unwrap();
    assert_eq!(backend_status(s.addr).await["toolCircuits"], json!([]));

    // An operator takes one tool out, and gives it back.
    let force = async |state: &str| {
        let body = format!(r#"{{"state": "{state}"}}"#);
        raw(
            s.addr,
            "POST",
            "/api/admin/backends/gray/tools/steady/circuit",
            &[],
            &body,
        )
        .await
    };
    assert_eq!(force("open").await.0, 200);
    let e = c.call_tool("gray_steady", json!({})).await.unwrap_err();
    assert_eq!(rpc(&e).1["reason"], "tool_circuit_open", "{e}");
    tools_changed_until(c, &mut notes, |t| !t.contains(&"gray_steady".into())).await;
    let circuits = backend_status(s.addr).await["toolCircuits"].clone();
    assert_eq!(circuits[0]["override"], "forced-open", "{circuits}");
    assert_eq!(force("auto").await.0, 200);
    c.call_tool("gray_steady", json!({})).await.unwrap();
    let (status, _) = raw(
        s.addr,
        "POST",
        "/api/admin/backends/gray/tools/nope/circuit",
        &[],
        r#"{"state": "open"}"#,
    )
    .await;
    assert_eq!(status, 404, "a tool the backend does not list");
    s.stop.cancel();
}

#[tokio::test]
async fn a_callers_mistakes_and_tool_errors_trip_nothing_in_1000_calls() {
    let Setup { s, .. } = setup("mistakes", "{}").await;
    let c = &s.client;
    for _ in 0..500 {
        let e = c.call_tool("mistakes_strict", json!({})).await.unwrap_err();
        assert_eq!(rpc(&e).0, -32602, "the backend's own answer, passed on");
        let r = c.call_tool("mistakes_oops", json!({})).await.unwrap();
        assert_eq!(r["isError"], true);
    }
    let status = backend_status(s.addr).await;
    assert_eq!(status["circuit"]["state"], "closed");
    assert_eq!(status["toolCircuits"], json!([]));
    assert_eq!(status["health"], "healthy", "{status}");
    s.stop.cancel();
}

#[tokio::test]
async fn a_backend_failing_40_percent_across_its_tools_opens_its_own_breaker() {
    let Setup { s, .. } = setup("spread", "{failureRateThreshold: 30%}").await;
    let c = &s.client;
    let mut refused = None;
    'calls: for round in 0..10 {
        for i in 0..10 {
            if let Err(e) = c.call_tool(&format!("spread_t{i}"), json!({})).await {
                let (code, data, message) = rpc(&e);
                if code != -32603 {
                    refused = Some((round * 10 + i, data, message));
                    break 'calls;
                }
            }
        }
    }
    let Some((at, data, message)) = refused else {
        panic!("a backend failing 40 % across its tools was never refused");
    };
    // Its own breaker, not a tool's: no tool had enough calls to be judged alone.
    assert_eq!(data["circuit"], "open", "{message}");
    assert!(at < 30, "refused only at call {at}");
    let status = backend_status(s.addr).await;
    assert_eq!(status["circuit"]["state"], "open");
    assert_eq!(status["toolCircuits"], json!([]));
    s.stop.cancel();
}

#[tokio::test]
async fn a_slow_tool_opens_by_its_slow_call_rate_and_then_fails_fast() {
    let Setup { gray, s, .. } = setup("slow", "{slowCallDurationThreshold: 1s}").await;
    let c = &s.client;
    // Quick calls first: the backend as a whole is not slow.
    for _ in 0..20 {
        c.call_tool("slow_steady", json!({})).await.unwrap();
    }
    // Ten 3 s calls at once (minimumCalls 10, slowCallRateThreshold 100 %).
    let crawls = (0..10).map(|_| c.call_tool("slow_crawl", json!({})));
    for answer in futures_util::future::join_all(crawls).await {
        answer.unwrap();
    }
    let e = c.call_tool("slow_crawl", json!({})).await.unwrap_err();
    let (code, data, message) = rpc(&e);
    assert_eq!(
        (code, &data["reason"]),
        (-31001, &json!("tool_circuit_open"))
    );
    assert!(message.contains("were slow"), "{message}");
    assert_eq!(gray.calls("crawl"), 10, "refused without contact");
    c.call_tool("slow_steady", json!({})).await.unwrap();
    let status = backend_status(s.addr).await;
    assert_eq!(status["circuit"]["state"], "closed");
    assert_eq!(status["toolCircuits"][0]["tool"], "crawl");
    s.stop.cancel();
}

#[tokio::test]
async fn a_failed_read_is_retried_once_and_a_write_never() {
    let Setup { gray, s, .. } = setup("retry", "{}").await;
    let c = &s.client;
    // The read-only tool's first attempt meets a 503; its retry is answered.
    let r = c.call_tool("retry_lookup", json!({})).await.unwrap();
    assert_eq!(r["content"][0]["text"], "done");
    assert_eq!(gray.calls("lookup"), 2);
    // A tool that may not be run twice is not: the client gets the failure.
    let e = c.call_tool("retry_write", json!({})).await.unwrap_err();
    assert_eq!(rpc(&e).0, -31001, "{e}");
    assert_eq!(gray.calls("write"), 1);
    let status = backend_status(s.addr).await;
    assert_eq!(status["retries"]["retried"], 1, "{status}");
    let (_, metrics) = get_text(s.addr, "/metrics").await;
    assert!(
        metrics.contains(
            r#"toolhive_vmcp_backend_retries_total{backend="retry",outcome="retried"} 1"#
        ),
        "{metrics}"
    );
    s.stop.cancel();
}

#[tokio::test]
async fn a_time_window_forgets_calls_older_than_its_seconds() {
    // Only a failure rate of 100 % opens it; passive health speaks up at 50 %.
    let Setup { s, .. } = setup(
        "timed",
        "{slidingWindow: 2s, minimumCalls: 2, failureRateThreshold: 100%}",
    )
    .await;
    let c = &s.client;
    // Ten quick successes (counted without the breaker's lock), then three seconds of
    // quiet: the monitor folds them into their own second, which leaves the window.
    for _ in 0..10 {
        c.call_tool("timed_steady", json!({})).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One failure and one success now: half of the window's calls failed. (Had the ten
    // been counted in this second, 1 of 12 would have.)
    let e = c.call_tool("timed_flaky", json!({})).await.unwrap_err();
    assert_eq!(rpc(&e).0, -32603);
    c.call_tool("timed_steady", json!({})).await.unwrap();
    let status = backend_status(s.addr).await;
    assert_eq!(status["health"], "degraded", "{status}");
    assert_eq!(
        status["reason"],
        "50 % of the last 2 calls failed while health checks pass"
    );
    s.stop.cancel();
}
