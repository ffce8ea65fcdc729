//! Both protocol eras on one `/mcp` (spec §10), as a 2026-07-28 client sees it on the
//! wire: `server/discover`, header validation, `resultType`, health-aware `ttlMs`,
//! `subscriptions/listen`; and what any client sees for unreadable bodies and foreign
//! hosts.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::net::SocketAddr;
use std::time::Duration;

use hale_testkit::{Fault, ServerConfig, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const V: &str = "2026-07-28";

/// A hale-testkit backend that speaks 2026-07-28 only.
async fn modern_only() -> TestServer {
    TestServer::start(ServerConfig {
        era: hale_testkit::Era::Modern,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

/// One backend `t`; panic mode off, so its death withdraws its tools.
fn config(server: &TestServer, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: t, url: \"{}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [t]}}\noperational:\n  failureHandling: {{healthCheckInterval: 300ms, healthCheckTimeout: 200ms, unhealthyThreshold: 2, panicThreshold: 0%}}\n{extra}",
        server.url()
    )
}

/// A modern request: the body with `_meta`, and the headers mirroring it.
fn modern(method: &str, params: Value) -> (Vec<(String, String)>, Value) {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}});
    let mut headers = vec![
        ("MCP-Protocol-Version".to_string(), V.to_string()),
        ("Mcp-Method".to_string(), method.to_string()),
    ];
    if let Some(name) = params
        .get("name")
        .or(params.get("uri"))
        .and_then(Value::as_str)
    {
        headers.push(("Mcp-Name".into(), name.into()));
    }
    (
        headers,
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
}

/// Sends one POST to `/mcp` (the body as written) and leaves the connection open.
async fn open_post(
    addr: SocketAddr,
    headers: &[(String, String)],
    body: &str,
) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    s
}

/// Sends one POST to `/mcp` and reads the whole answer: status, head, body.
async fn post(addr: SocketAddr, headers: &[(String, String)], body: &str) -> (u16, String, String) {
    let mut s = open_post(addr, headers, body).await;
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (status, head.to_string(), body.to_string())
}

async fn call(addr: SocketAddr, method: &str, params: Value) -> (u16, Value) {
    let (headers, body) = modern(method, params);
    let (status, _, text) = post(addr, &headers, &body.to_string()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn discover_and_every_result_speak_2026_07_28() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&config(&server, ""), None).await;
    let (status, d) = call(addr, "server/discover", json!({})).await;
    assert_eq!(status, 200);
    let r = &d["result"];
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["supportedVersions"][0], V);
    assert!(
        r["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2025-06-18")
    );
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
    assert!(
        r["ttlMs"].as_u64().is_some() && r["cacheScope"] == "public",
        "{r}"
    );
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "vmcp"
    );

    let (_, list) = call(addr, "tools/list", json!({})).await;
    let list = &list["result"];
    assert_eq!(list["resultType"], "complete");
    assert!(
        list["ttlMs"].as_u64().unwrap() <= 300,
        "no longer than the next check: {list}"
    );
    assert_eq!(list["cacheScope"], "public");
    assert!(
        list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo")
    );

    let (_, echo) = call(
        addr,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(echo["result"]["resultType"], "complete");
    assert_eq!(echo["result"]["content"][0]["text"], "hi");
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn headers_that_disagree_with_the_body_and_unknown_versions_or_methods_are_refused() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&config(&server, ""), None).await;
    let (mut headers, body) = modern("tools/call", json!({"name": "echo", "arguments": {}}));
    headers.retain(|(k, _)| k != "Mcp-Name");
    headers.push(("Mcp-Name".into(), "add".into()));
    let (status, _, text) = post(addr, &headers, &body.to_string()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("-32020"), "{text}");

    let (mut headers, mut body) = modern("tools/list", json!({}));
    headers[0].1 = "2099-01-01".into();
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (status, _, text) = post(addr, &headers, &body.to_string()).await;
    assert_eq!(status, 400);
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["error"]["code"], -32022);
    assert_eq!(e["error"]["data"]["requested"], "2099-01-01");
    assert_eq!(e["error"]["data"]["supported"][0], V);

    for method in ["tools/destroy", "ping", "logging/setLevel"] {
        let (status, e) = call(addr, method, json!({})).await;
        assert_eq!(
            (status, e["error"]["code"].as_i64()),
            (404, Some(-32601)),
            "{method}"
        );
    }
    // No session in this era: GET and DELETE have nothing to act on.
    for verb in ["GET", "DELETE"] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{verb} /mcp HTTP/1.1\r\nHost: {addr}\r\nMCP-Protocol-Version: {V}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 405"), "{verb}: {text}");
    }
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn unreadable_bodies_get_400_with_a_json_rpc_error_and_foreign_hosts_403() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&config(&server, ""), None).await;
    for (body, code) in [
        ("{not json", -32700),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
        (r#"{"id":1,"method":"ping"}"#, -32600),
    ] {
        let (status, head, text) = post(addr, &[], body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(
            head.to_ascii_lowercase().contains("application/json"),
            "{head}"
        );
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["error"]["code"], code, "{body}");
    }
    // A body over the limit: 413, and the limit says so where an operator looks.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(5 << 20)
    );
    let (status, _, _) = post(addr, &[], &huge).await;
    assert_eq!(status, 413);
    let (_, status) = get_json(addr, "/status").await;
    let body = &status["limits"]["requestBody"];
    assert_eq!(body["refused"], 1, "{body}");
    assert!(body["lastHit"].is_string(), "{body}");
    for path in ["/mcp", "/status", "/metrics", "/api/backends/health"] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 403"), "{path}: {text}");
    }
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn ttl_drops_to_zero_while_a_backend_is_failing_checks() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = config(&server, "").replace("unhealthyThreshold: 2", "unhealthyThreshold: 50");
    let Started { addr, stop, .. } = start_with(&yaml, None).await;
    server.set_fault(Some(Fault::Status(503))).await;
    // One failed check: still routable (threshold 2), but a withdrawal may be near.
    wait_for("a failed check", async || {
        get_json(addr, "/status").await.1["backends"][0]["consecutiveFailures"].as_u64() >= Some(1)
    })
    .await;
    let (_, d) = call(addr, "server/discover", json!({})).await;
    assert_eq!(d["result"]["ttlMs"], 0, "{d}");
    stop.cancel();
    server.shutdown();
}

/// Reads SSE `data:` messages from a listen stream.
struct Listen {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl Listen {
    async fn open(addr: SocketAddr, notifications: Value) -> Listen {
        let (headers, mut body) = modern(
            "subscriptions/listen",
            json!({"notifications": notifications}),
        );
        body["id"] = json!("sub-7");
        let body = body.to_string();
        let s = open_post(addr, &headers, &body).await;
        Listen {
            lines: BufReader::new(s).lines(),
        }
    }

    /// The next message, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let line = self.lines.next_line().await.ok()??;
            if let Some(data) = line.strip_prefix("data: ") {
                return serde_json::from_str(data).ok();
            }
        }
    }
}

#[tokio::test]
async fn listen_acknowledges_tags_filters_and_ends_with_a_final_result() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&config(&server, ""), None).await;
    let mut listen = Listen::open(
        addr,
        json!({"toolsListChanged": true, "somethingUnknown": true}),
    )
    .await;
    let ack = listen.next().await.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-7"
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "only what hale honours"
    );

    // Once its tools are in the catalog, the backend dies.
    wait_for("the catalog", async || {
        get_json(addr, "/status").await.1["backends"][0]["tools"].as_u64() > Some(0)
    })
    .await;
    // (Their arrival may have been announced: skip whatever came before.)
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), listen.next()).await {
        assert_eq!(m["method"], "notifications/tools/list_changed", "{m}");
    }
    server.set_fault(Some(Fault::Down)).await;
    let note = tokio::time::timeout(Duration::from_secs(10), listen.next()).await;
    if note.is_err() {
        let (_, status) = get_json(addr, "/status").await;
        panic!("no notification; status {status}");
    }
    let note = note.unwrap().unwrap();
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-7"
    );

    stop.cancel();
    // At shutdown: the listen request's own result, then the end of the stream.
    let last = loop {
        let m = tokio::time::timeout(Duration::from_secs(15), listen.next())
            .await
            .unwrap()
            .unwrap();
        if m.get("id").is_some() {
            break m;
        }
        assert_ne!(
            m["method"], "notifications/prompts/list_changed",
            "not asked for"
        );
    };
    assert_eq!(last["id"], "sub-7");
    assert_eq!(last["result"]["resultType"], "complete");
    server.shutdown();
}

#[tokio::test]
async fn a_call_in_flight_ends_when_its_backend_is_withdrawn() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } =
        start_with(&config(&server, "  timeouts: {default: 60s}\n"), None).await;
    // The catalog knows the tool before the call (a loaded machine may be slow to list).
    let (_, list) = call(addr, "tools/list", json!({})).await;
    assert!(list.to_string().contains("\"sleep\""), "{list}");
    let (headers, body) = modern(
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": 30000}}),
    );
    let call = tokio::spawn(async move { post(addr, &headers, &body.to_string()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.set_fault(Some(Fault::Hang)).await;
    // Withdrawn after two failed checks (~0.6 s); the call ends then, not after 30 s.
    let (status, _, text) = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call waited for its timeout")
        .unwrap();
    assert_eq!(status, 200);
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        e["error"]["code"],
        hale_mcp::codes::BACKEND_UNAVAILABLE,
        "{text}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("withdrawn"),
        "{text}"
    );
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_call() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let config = hale_vmcp::VmcpConfig::from_yaml(
        "t.yaml",
        &config(&server, "  timeouts: {default: 60s}\n"),
    )
    .unwrap();
    let vmcp = hale_vmcp::Vmcp::bind(config, None)
        .await
        .unwrap()
        .with_drain_timeout(Duration::from_secs(30));
    let addr = vmcp.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(vmcp.run(stop.clone()));
    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    let (_, list) = call(addr, "tools/list", json!({})).await;
    assert!(list.to_string().contains("\"sleep\""), "{list}");
    // A 30 s call, and the client hangs up after 300 ms.
    let (headers, body) = modern(
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": 30000}}),
    );
    let body = body.to_string();
    let s = open_post(addr, &headers, &body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The call was dropped with its client: shutdown has nothing to drain (it would wait
    // up to 30 s for a call still running).
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the drain waited for a call whose client had gone")
        .unwrap();
    server.shutdown();
}

#[tokio::test]
async fn a_legacy_client_lists_and_calls_a_2026_07_28_only_backend() {
    let modern = modern_only().await;
    let Started {
        addr, stop, client, ..
    } = start_with(&config(&modern, ""), None).await;
    let tools = client.list_tools().await.unwrap();
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{tools:?}");
    let echo = client
        .call_tool("echo", json!({"text": "bridged"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "bridged");
    let (_, status) = get_json(addr, "/status").await;
    assert_eq!(status["backends"][0]["health"], "healthy", "{status}");
    // One handshake was tried, for the first legacy client, and refused: remembered.
    client
        .call_tool("echo", json!({"text": "again"}))
        .await
        .unwrap();
    assert_eq!(modern.stats().by_method.get("initialize"), Some(&1));
    assert!(
        modern.stats().by_method.contains_key("server/discover"),
        "probed with server/discover"
    );
    stop.cancel();
    modern.shutdown();
}

#[tokio::test]
async fn a_2026_07_28_backends_list_change_reaches_legacy_clients_through_its_listen_stream() {
    let modern = modern_only().await;
    let Started { stop, client, .. } = start_with(&config(&modern, ""), None).await;
    let mut notes = client.notifications();
    assert!(
        client
            .list_tools()
            .await
            .unwrap()
            .iter()
            .all(|t| t["name"] != "fresh")
    );
    // The backend's subscriptions/listen stream is open once the catalog is built.
    wait_for("the vMCP's listen stream to the backend", async || {
        modern
            .stats()
            .by_method
            .contains_key("subscriptions/listen")
    })
    .await;
    modern.add_tool("fresh");
    let tools = tools_changed_until(&client, &mut notes, |t| t.iter().any(|t| t == "fresh")).await;
    assert!(tools.iter().any(|t| t == "echo"));
    stop.cancel();
    modern.shutdown();
}

#[tokio::test]
async fn a_backend_upgraded_in_place_to_2026_07_28_is_learned_again() {
    let legacy = TestServer::start(ServerConfig::default()).await.unwrap();
    let addr_of_backend = legacy.addr();
    let Started { stop, client, .. } = start_with(&config(&legacy, ""), None).await;
    let echo = client
        .call_tool("echo", json!({"text": "before"}))
        .await
        .unwrap();
    assert_eq!(echo["content"][0]["text"], "before");
    // The same address, now 2026-07-28 only (an upgrade in place).
    legacy.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let modern = TestServer::start(ServerConfig {
        addr: addr_of_backend,
        era: hale_testkit::Era::Modern,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    wait_for("calls to reach the upgraded backend", async || {
        client
            .call_tool("echo", json!({"text": "after"}))
            .await
            .is_ok_and(|r| r["content"][0]["text"] == "after")
    })
    .await;
    assert!(modern.stats().by_method.contains_key("server/discover"));
    stop.cancel();
    modern.shutdown();
}

#[tokio::test]
async fn a_2026_07_28_client_gets_log_lines_only_when_it_asks_for_them() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&config(&server, ""), None).await;
    let _ = call(addr, "tools/list", json!({})).await;
    let logging_call = |level: Option<&str>| {
        let (headers, mut body) = modern(
            "tools/call",
            json!({"name": "test_tool_with_logging", "arguments": {}}),
        );
        if let Some(level) = level {
            body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!(level);
        }
        (headers, body.to_string())
    };
    // The testkit logs three lines at `info`.
    for (level, lines) in [
        (None, 0),
        (Some("error"), 0),
        (Some("info"), 3),
        (Some("debug"), 3),
    ] {
        let (headers, body) = logging_call(level);
        let (status, _, text) = post(addr, &headers, &body).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("Tool with logging executed successfully"),
            "{text}"
        );
        assert_eq!(
            text.matches("notifications/message").count(),
            lines,
            "logLevel {level:?}: {text}"
        );
    }
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn resource_updates_from_a_2026_07_28_only_backend_reach_legacy_and_modern_subscribers() {
    let modern = modern_only().await;
    let Started {
        addr, stop, client, ..
    } = start_with(&config(&modern, ""), None).await;
    // A legacy client subscribes: the backend has no resources/subscribe; the vMCP asks
    // its listen stream for the URI and passes the update to the session.
    let listed = client.request("resources/list", None).await.unwrap();
    assert!(
        listed.to_string().contains("test://watched-resource"),
        "{listed}"
    );
    let mut notes = client.notifications();
    client
        .request(
            "resources/subscribe",
            Some(json!({"uri": "test://watched-resource"})),
        )
        .await
        .unwrap();
    let update = next_notification(&mut notes, "notifications/resources/updated").await;
    let params = update.params.unwrap();
    assert_eq!(params["uri"], "test://watched-resource");
    assert!(
        params.get("_meta").is_none(),
        "the backend's subscription id leaked: {params}"
    );
    assert_eq!(modern.stats().by_method.get("resources/subscribe"), None);

    // A 2026-07-28 client's listen stream with another URI: the vMCP's stream to the
    // backend is reopened with both, and the update comes tagged with the client's id.
    let mut listen = Listen::open(
        addr,
        json!({"resourceSubscriptions": ["test://static-text"]}),
    )
    .await;
    let ack = listen.next().await.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    let note = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = listen.next().await.unwrap();
            if m["method"] == "notifications/resources/updated" {
                return m;
            }
        }
    })
    .await
    .expect("the modern listener's update");
    assert_eq!(note["params"]["uri"], "test://static-text");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-7"
    );
    stop.cancel();
    modern.shutdown();
}

/// A modern `tools/call` of `name` with `extra` params and these client capabilities; the
/// answer (the last message if it came as an SSE stream).
async fn modern_call(addr: SocketAddr, name: &str, extra: Value, capabilities: Value) -> Value {
    let mut params = json!({"name": name, "arguments": {"message": "Your name?"}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let (headers, mut body) = modern("tools/call", params);
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities;
    let (_, _, text) = post(addr, &headers, &body.to_string()).await;
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&text)
        .to_string();
    serde_json::from_str(&last).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_legacy_backends_elicitation_reaches_a_2026_07_28_client_as_input_required() {
    // hale-testkit's test_elicitation asks its caller (elicitation/create) mid-call, as a
    // handshake-era server does.
    let legacy = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started {
        addr, stop, vmcp, ..
    } = start_with(&config(&legacy, ""), None).await;
    let _ = call(addr, "tools/list", json!({})).await; // the catalog knows the tool
    let caps = json!({"elicitation": {}});
    let first = modern_call(addr, "test_elicitation", json!({}), caps.clone()).await;
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1, "{first}");
    let (key, request) = requests.iter().next().unwrap();
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["message"], "Your name?");
    let token = result["requestState"].as_str().unwrap().to_string();

    // The retry with the answer: the backend gets it and finishes the call.
    let answer = json!({"action": "accept", "content": {"name": "Ada"}});
    let retry = json!({"inputResponses": {key.clone(): answer}, "requestState": token});
    let done = modern_call(addr, "test_elicitation", retry.clone(), caps.clone()).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("action=accept") && text.contains("Ada"),
        "{done}"
    );

    // The state was used up: the same retry again is refused, as is a forged one.
    let again = modern_call(addr, "test_elicitation", retry, caps).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    assert_eq!(
        vmcp.calls_waiting_for_input(),
        0,
        "a finished call still parked"
    );

    // A client that did not declare elicitation: the backend is told at once.
    let undeclared = modern_call(addr, "test_elicitation", json!({}), json!({})).await;
    assert_eq!(
        undeclared["result"]["resultType"], "complete",
        "{undeclared}"
    );
    assert_eq!(undeclared["result"]["isError"], true, "{undeclared}");
    assert!(
        undeclared
            .to_string()
            .contains("did not declare the elicitation capability"),
        "{undeclared}"
    );
    stop.cancel();
    legacy.shutdown();
}

#[tokio::test]
async fn a_2026_07_28_callers_log_level_reaches_a_handshake_era_backend_once() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&config(&server, ""), None).await;
    let _ = call(addr, "tools/list", json!({})).await;
    let call_at = |level: &str| {
        let (headers, mut body) = modern(
            "tools/call",
            json!({"name": "test_tool_with_logging", "arguments": {}}),
        );
        body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!(level);
        (headers, body.to_string())
    };
    let set_levels = || {
        server
            .stats()
            .by_method
            .get("logging/setLevel")
            .copied()
            .unwrap_or(0)
    };
    // Each connection goes to the next worker thread, each with its shared session: 2n
    // calls reach all n of them.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    for _ in 0..2 * workers {
        let (headers, body) = call_at("debug");
        assert_eq!(post(addr, &headers, &body).await.0, 200);
    }
    let after_debug = set_levels();
    assert!(
        (1..=workers).contains(&after_debug),
        "debug asked for on each shared session once: {after_debug} for {workers} workers"
    );
    // A higher level never raises it again (other callers may want debug).
    for _ in 0..2 * workers {
        let (headers, body) = call_at("error");
        assert_eq!(post(addr, &headers, &body).await.0, 200);
    }
    assert_eq!(set_levels(), after_debug);
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn a_2026_07_28_callers_envelope_never_reaches_a_handshake_era_backend_session() {
    // hale-testkit refuses a handshake-era request whose body carries the 2026-07-28
    // envelope, as the SDK 2.x servers do (-32020): the envelope is the caller's hop only.
    let legacy = TestServer::start(ServerConfig::default()).await.unwrap();
    // Checks far apart: a loaded machine's slow check must not withdraw the backend here.
    let yaml = config(&legacy, "").replace(
        "healthCheckInterval: 300ms, healthCheckTimeout: 200ms",
        "healthCheckInterval: 30s, healthCheckTimeout: 10s",
    );
    let Started { addr, stop, .. } = start_with(&yaml, None).await;
    for _ in 0..2 {
        let (status, answer) = call(
            addr,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "env"}}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "env", "{answer}");
        let (status, answer) = call(addr, "tools/list", json!({})).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer["result"]["tools"]
                .as_array()
                .is_some_and(|t| !t.is_empty()),
            "{answer}"
        );
    }
    stop.cancel();
    legacy.shutdown();
}
