//! OpenTelemetry end to end, against an OTLP/HTTP receiver written for the test (it
//! decodes what it is sent with the OTLP protobuf types) and a wiremock backend that
//! records the trace context it is sent: a caller's trace continues through the vMCP to
//! the backend, which sees hale's CLIENT span as its parent; a breaker's decisions and a
//! health check are in the trace; the semconv histograms arrive over OTLP.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::otlp::OtlpReceiver;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A call's `_meta.traceparent` and `traceparent` header.
type Seen = (Option<String>, Option<String>);

/// A backend with one tool, `lookup`, that fails with 503 while `failing`; it keeps the
/// `_meta.traceparent` and the `traceparent` header of each call.
#[derive(Clone, Default)]
struct Backend {
    failing: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Respond for Backend {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(id) = body.get("id").cloned() else {
            return ResponseTemplate::new(202);
        };
        let result = match body["method"].as_str().unwrap_or_default() {
            "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "wiremock", "version": "0"}}),
            "tools/list" => {
                json!({"tools": [{"name": "lookup", "inputSchema": {"type": "object"}}]})
            }
            "tools/call" => {
                let meta = body["params"]["_meta"]["traceparent"]
                    .as_str()
                    .map(str::to_string);
                let header = req
                    .headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                self.seen.lock().unwrap().push((meta, header));
                if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                    return ResponseTemplate::new(503).set_body_string("overloaded");
                }
                json!({"content": [{"type": "text", "text": "found"}]})
            }
            _ => json!({}),
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_callers_trace_goes_through_the_vmcp_to_the_backend_with_the_breakers_decisions() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let collector = otlp.url().to_string();
    let server = MockServer::start().await;
    let backend = Backend::default();
    Mock::given(method("POST"))
        .respond_with(backend.clone())
        .mount(&server)
        .await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: wm, url: \"{}/mcp\"}}\noperational:\n  failureHandling:\n    healthCheckInterval: 60s\n    panicThreshold: 0%\n    circuitBreaker: {{failureThreshold: 2, timeout: 30s}}\ntelemetry:\n  endpoint: \"{collector}\"\n  serviceName: hale-under-test\n  samplingRate: \"1\"\n  healthCheckSamplingRate: 1\n",
        server.uri()
    );
    let common::Running {
        addr,
        stop,
        task: running,
    } = common::run(&yaml, Duration::from_secs(1)).await;
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();

    // A call carrying the caller's context in _meta.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let answer = client
        .request("tools/call", Some(json!({"name": "wm_lookup", "arguments": {}, "_meta": {"traceparent": traceparent}})))
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "found");
    let (meta, header) = backend.seen.lock().unwrap()[0].clone();
    let meta = meta.expect("the backend got a traceparent in _meta");
    assert!(
        meta.starts_with(&format!("00-{CLIENT_TRACE}-")),
        "the caller's trace: {meta}"
    );
    assert_ne!(meta, traceparent, "hale's own span is the backend's parent");
    assert_eq!(
        header.as_deref(),
        Some(meta.as_str()),
        "the same context in the HTTP header"
    );

    // Two failures open the circuit; the next call is refused without contact.
    backend
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2 {
        assert!(client.call_tool("wm_lookup", json!({})).await.is_err());
    }
    assert!(client.call_tool("wm_lookup", json!({})).await.is_err());
    assert_eq!(
        backend.seen.lock().unwrap().len(),
        3,
        "the refused call never reached it"
    );

    // Stopping flushes what is left, within the drain.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .unwrap()
        .unwrap();

    let spans = otlp.spans();
    let server_span = spans
        .iter()
        .find(|s| s.name == "tools/call wm_lookup" && s.trace_id == CLIENT_TRACE)
        .expect("the SERVER span, in the caller's trace");
    assert_eq!(server_span.kind, "server");
    assert_eq!(server_span.service, "hale-under-test");
    assert_eq!(server_span.parent_span_id, CLIENT_SPAN);
    assert_eq!(server_span.attr("gen_ai.tool.name"), Some("wm_lookup"));
    assert_eq!(server_span.attr("mcp.method.name"), Some("tools/call"));
    let client_span = spans
        .iter()
        .find(|s| s.name == "tools/call lookup" && s.parent_span_id == server_span.span_id)
        .expect("a CLIENT span under it, named by the backend's own tool");
    assert_eq!(client_span.kind, "client");
    assert_eq!(client_span.attr("mcp.backend.name"), Some("wm"));
    assert_eq!(client_span.attr("hale.circuit.state"), Some("closed"));
    assert!(
        meta.contains(&client_span.span_id),
        "the backend's parent is the CLIENT span"
    );

    let opened = spans
        .iter()
        .find(|s| s.kind == "client" && s.has_event("circuit changed"))
        .expect("the call that opened the circuit carries the transition");
    assert_eq!(opened.attr("error.type"), Some("http_status"), "{opened:?}");
    assert!(
        opened.has_event("backend withdrawn"),
        "and the withdrawal it caused: {:?}",
        opened.events
    );
    let logs = otlp.logs();
    let logged = logs
        .iter()
        .find(|l| l.body == "circuit changed")
        .expect("the transition as an OTel log record");
    assert_eq!(
        logged.trace_id, opened.trace_id,
        "in the trace of the call that caused it"
    );
    assert_eq!(
        logged.attributes.get("hale.circuit.to").map(String::as_str),
        Some("open")
    );
    assert!(
        logs.iter()
            .any(|l| l.body == "backend withdrawn" && l.severity == "WARN"),
        "{logs:?}"
    );
    let refused = spans
        .iter()
        .find(|s| s.attr("hale.circuit.refused") == Some("true"))
        .expect("the refused call's CLIENT span");
    assert_eq!(refused.attr("error.type"), Some("circuit_open"));
    assert!(refused.has_event("circuit refused the call"));
    // The refused call's SERVER span: an error of the server's, not the caller's.
    let refused_server = spans
        .iter()
        .find(|s| s.span_id == refused.parent_span_id)
        .unwrap();
    assert!(refused_server.error);

    let check = spans
        .iter()
        .find(|s| s.name == "health_check")
        .expect("a traced health check");
    assert!(check.has_event("backend health changed"));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "ping" && s.parent_span_id == check.span_id),
        "its ping, a CLIENT span under it"
    );

    // The histograms, over OTLP too (exported at shutdown).
    let metrics = otlp.metric_names();
    for name in [
        "mcp.server.operation.duration",
        "mcp.client.operation.duration",
    ] {
        assert!(metrics.iter().any(|m| m == name), "{name} in {metrics:?}");
    }
}
