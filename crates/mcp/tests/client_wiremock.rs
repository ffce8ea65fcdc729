//! The client against wiremock backends that fail the way real ones do: 503 runs, answers
//! slower than the deadline, reset connections, garbage bodies, lost sessions.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hale_core::{CheckOutcome, FailureCategory};
use hale_mcp::{ClientOptions, McpClient, McpError, Probe, ProbeMethod, TransportKind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers initialize and ping like a stateless MCP server, echoing the request id.
fn mcp_answer(req: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let Some(id) = body.get("id").cloned() else {
        return ResponseTemplate::new(202);
    };
    let result = match body["method"].as_str() {
        Some("initialize") => {
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                     "serverInfo": {"name": "wiremock", "version": "0"}})
        }
        _ => json!({}),
    };
    ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn probe(server: &MockServer, timeout: Duration) -> Probe {
    Probe::new(
        &format!("{}/mcp", server.uri()),
        ClientOptions {
            transport: TransportKind::StreamableHttp,
            ..ClientOptions::default()
        },
        ProbeMethod::Ping,
        timeout,
    )
}

fn category(outcome: &CheckOutcome) -> Option<FailureCategory> {
    match outcome {
        CheckOutcome::Failure(f) => Some(f.category),
        _ => None,
    }
}

#[tokio::test]
async fn a_run_of_503s_fails_each_check_then_the_backend_recovers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(mcp_answer)
        .with_priority(2)
        .mount(&server)
        .await;

    let mut probe = probe(&server, Duration::from_secs(2));
    let first = probe.check().await;
    assert_eq!(category(&first), Some(FailureCategory::HttpStatus));
    let CheckOutcome::Failure(f) = &first else {
        unreachable!()
    };
    assert!(
        f.message.contains("HTTP 503") && f.message.contains("upstream unavailable"),
        "{f}"
    );
    assert_eq!(
        category(&probe.check().await),
        Some(FailureCategory::HttpStatus)
    );
    assert!(matches!(probe.check().await, CheckOutcome::Success { .. }));
}

#[tokio::test]
async fn an_answer_slower_than_the_deadline_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(move |req: &Request| mcp_answer(req).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let outcome = probe(&server, Duration::from_millis(300)).check().await;
    assert_eq!(
        category(&outcome),
        Some(FailureCategory::Timeout),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the probe does not wait for the answer"
    );
}

#[tokio::test]
async fn a_reset_connection_is_classified_as_such() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with_err(|_: &Request| io::Error::from(io::ErrorKind::ConnectionReset))
        .mount(&server)
        .await;
    let outcome = probe(&server, Duration::from_secs(2)).check().await;
    assert_eq!(
        category(&outcome),
        Some(FailureCategory::ConnectionReset),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn garbage_bodies_are_protocol_failures() {
    for (content_type, body) in [
        ("text/html", "<html><body>Bad Gateway</body></html>"),
        ("application/json", "{\"not\": \"json-rpc\"}"),
        ("application/json", "[1,2,3]"),
        ("text/event-stream", "event: message\ndata: not json\n\n"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, content_type))
            .mount(&server)
            .await;
        let outcome = probe(&server, Duration::from_secs(2)).check().await;
        assert_eq!(
            category(&outcome),
            Some(FailureCategory::Protocol),
            "{body}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_json_rpc_error_from_a_live_server_is_not_a_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            if body["method"] == "ping" {
                ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": body["id"],
                    "error": {"code": -32601, "message": "Method not found"}}))
            } else {
                mcp_answer(req)
            }
        })
        .mount(&server)
        .await;
    assert!(matches!(
        probe(&server, Duration::from_secs(2)).check().await,
        CheckOutcome::Success { .. }
    ));
}

/// A Python-SDK-like server: sessions, and 400 "Missing session ID" once it forgot ours.
struct ForgetfulServer {
    initializes: Arc<AtomicUsize>,
    pings: Arc<AtomicUsize>,
    /// Which ping numbers (1-based) get the lost-session answer.
    forget_on: Vec<usize>,
    lost_status: u16,
}

impl Respond for ForgetfulServer {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        match body["method"].as_str() {
            Some("initialize") => {
                let n = self.initializes.fetch_add(1, Ordering::SeqCst) + 1;
                mcp_answer(req).insert_header("mcp-session-id", format!("session-{n}"))
            }
            Some("ping") => {
                let n = self.pings.fetch_add(1, Ordering::SeqCst) + 1;
                if self.forget_on.contains(&n) {
                    ResponseTemplate::new(self.lost_status).set_body_json(json!({"jsonrpc": "2.0",
                        "id": "server-error", "error": {"code": -32600, "message": "Bad Request: Missing session ID"}}))
                } else {
                    mcp_answer(req)
                }
            }
            _ => mcp_answer(req),
        }
    }
}

#[tokio::test]
async fn a_lost_session_is_reinitialized_once_and_the_request_succeeds() {
    for status in [400, 404] {
        let server = MockServer::start().await;
        let initializes = Arc::new(AtomicUsize::new(0));
        Mock::given(method("POST"))
            .and(path("/mcp"))
            .respond_with(ForgetfulServer {
                initializes: initializes.clone(),
                pings: Arc::default(),
                forget_on: vec![2],
                lost_status: status,
            })
            .mount(&server)
            .await;
        let client = McpClient::connect(&format!("{}/mcp", server.uri()), ClientOptions::default())
            .await
            .unwrap();
        client.ping().await.unwrap();
        client.ping().await.unwrap(); // forgotten, re-initialized, retried
        assert_eq!(initializes.load(Ordering::SeqCst), 2, "HTTP {status}");
        // The retry carried the new session.
        let requests = server.received_requests().await.unwrap();
        let last = requests.last().unwrap();
        assert_eq!(last.headers.get("mcp-session-id").unwrap(), "session-2");
    }
}

#[tokio::test]
async fn a_session_lost_again_after_reinitializing_is_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ForgetfulServer {
            initializes: Arc::default(),
            pings: Arc::default(),
            forget_on: vec![1, 2],
            lost_status: 404,
        })
        .mount(&server)
        .await;
    let client = McpClient::connect(&format!("{}/mcp", server.uri()), ClientOptions::default())
        .await
        .unwrap();
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err, McpError::SessionLost { .. }), "{err:?}");
    assert_eq!(err.category(), Some(FailureCategory::SessionLost));
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_reason() {
    for (url, reason) in [
        ("not a url", "not a URL"),
        ("ftp://127.0.0.1/mcp", "expected an http:// or https:// URL"),
        ("https:///mcp", "not a URL"),
    ] {
        let err = McpClient::connect(url, ClientOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(reason), "{url}: {err}");
    }
}
