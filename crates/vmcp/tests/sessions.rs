//! One backend session per client session (spec §11): over a stateful testkit backend
//! with per-session tools, each client's state is its own; sessions end with their
//! client, at the idle timeout, and within the per-backend limit.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient, McpError, codes};
use hale_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

fn stateful() -> ServerConfig {
    ServerConfig {
        session_tools: true,
        ..ServerConfig::default()
    }
}

fn one_backend(server: &TestServer, operational: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: s, url: \"{}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [s]}}\noperational:\n  failureHandling: {{healthCheckInterval: 30s}}\n{operational}",
        server.url()
    )
}

async fn client(addr: std::net::SocketAddr) -> McpClient {
    McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn text(client: &McpClient, tool: &str, args: Value) -> String {
    let result = client.call_tool(tool, args).await.unwrap();
    result["content"][0]["text"].as_str().unwrap().to_string()
}

/// Backend sessions the vMCP holds for clients now, as `/status` shows them.
async fn backend_sessions(addr: std::net::SocketAddr) -> u64 {
    get_json(addr, "/status").await.1["backends"][0]["sessions"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn two_clients_never_see_each_others_state() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started {
        addr,
        stop,
        client: a,
        vmcp,
    } = start_with(&one_backend(&server, ""), None).await;
    let b = client(addr).await;
    assert_eq!(
        text(&a, "remember", json!({"value": "secret-of-a"})).await,
        "ok"
    );
    assert_eq!(text(&b, "recall", json!({})).await, "nothing");
    assert_eq!(text(&a, "recall", json!({})).await, "secret-of-a");
    assert_eq!(text(&a, "count", json!({})).await, "1");
    assert_eq!(text(&b, "count", json!({})).await, "1");
    assert_eq!(text(&a, "count", json!({})).await, "2");
    assert_eq!(backend_sessions(addr).await, 2);

    // The session's resumable state names its backend session, small and serializable.
    let sid = a.session_id().await.unwrap();
    let resumable = vmcp.resumable(&sid).await.unwrap();
    assert_eq!(resumable.backend_sessions.len(), 1);
    assert!(resumable.backend_sessions.contains_key("s"));
    let text = serde_json::to_string(&resumable).unwrap();
    assert!(text.len() < 1024, "{text}");
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn fifty_clients_in_parallel_each_read_back_their_own() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&one_backend(&server, ""), None).await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        tasks.push(tokio::spawn(async move {
            let c = client(addr).await;
            let mine = format!("value-{n}");
            text(&c, "remember", json!({"value": mine})).await;
            tokio::task::yield_now().await;
            let back = text(&c, "recall", json!({})).await;
            c.close().await;
            (mine, back)
        }));
    }
    for t in tasks {
        let (mine, back) = t.await.unwrap();
        assert_eq!(mine, back);
    }
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn a_session_that_ends_leaves_no_backend_session_and_opening_one_costs_nothing() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started {
        addr,
        stop,
        client: first,
        ..
    } = start_with(&one_backend(&server, ""), None).await;
    // Opening a client session contacts no backend (once the catalog is built).
    first.list_tools().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = server.stats().requests;
    let c = client(addr).await;
    assert_eq!(
        server.stats().requests,
        before,
        "initialize reached a backend"
    );
    let open_before = server.stats().open_sessions;
    text(&c, "count", json!({})).await;
    assert_eq!(server.stats().open_sessions, open_before + 1);
    c.close().await;
    wait_for("the backend session to be deleted", async || {
        server.stats().open_sessions == open_before
    })
    .await;
    assert_eq!(backend_sessions(addr).await, 0);
    drop(first);
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn an_abandoned_session_is_closed_at_the_idle_timeout() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started {
        addr, stop, client, ..
    } = start_with(&one_backend(&server, "  sessionIdleTimeout: 1s\n"), None).await;
    text(&client, "count", json!({})).await;
    let open = server.stats().open_sessions;
    // The client goes quiet without saying goodbye.
    wait_for("the idle session to be closed", async || {
        server.stats().open_sessions == open - 1
    })
    .await;
    let gone = client.ping().await;
    // Its next request finds its session gone (404) and hale-mcp starts a new one.
    assert!(gone.is_ok(), "{gone:?}");
    assert_eq!(backend_sessions(addr).await, 0);
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn a_backend_that_forgets_sessions_costs_each_client_one_transparent_reinitialize() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started {
        addr,
        stop,
        client: a,
        ..
    } = start_with(&one_backend(&server, ""), None).await;
    let b = client(addr).await;
    assert_eq!(text(&a, "count", json!({})).await, "1");
    assert_eq!(text(&b, "count", json!({})).await, "1");
    assert_eq!(text(&b, "count", json!({})).await, "2");
    server.forget_sessions();
    // A's next call succeeds on a new backend session (its count starts again) …
    assert_eq!(text(&a, "count", json!({})).await, "1");
    // … and B's too, each on its own: they never share one.
    assert_eq!(text(&b, "count", json!({})).await, "1");
    assert_eq!(text(&a, "count", json!({})).await, "2");
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn at_the_session_limit_the_idlest_makes_room_and_only_all_busy_refuses() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started {
        addr,
        stop,
        client: a,
        ..
    } = start_with(&one_backend(&server, "  maxSessionsPerBackend: 2\n"), None).await;
    let b = client(addr).await;
    let c = client(addr).await;
    assert_eq!(text(&a, "count", json!({})).await, "1");
    tokio::time::sleep(Duration::from_millis(20)).await; // a is the idlest
    assert_eq!(text(&b, "count", json!({})).await, "1");
    // Clients that leave without DELETE must not lock new ones out: at the limit, the
    // idlest backend session (a's) is ended with DELETE and c gets one.
    let opened = server.stats().open_sessions;
    assert_eq!(text(&c, "count", json!({})).await, "1");
    wait_for("the evicted backend session to be deleted", async || {
        server.stats().open_sessions == opened
    })
    .await;
    assert!(backend_sessions(addr).await <= 2);
    // a comes back: a fresh backend session, as after a backend restart (b is idlest now).
    assert_eq!(text(&a, "count", json!({})).await, "1");
    // Every session busy right now: then, and only then, a client is refused.
    let (a, c) = (std::sync::Arc::new(a), std::sync::Arc::new(c));
    let busy: Vec<_> = [a.clone(), c.clone()]
        .into_iter()
        .map(|x| tokio::spawn(async move { x.call_tool("sleep", json!({"ms": 1500})).await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = b.call_tool("count", json!({})).await.unwrap_err();
    let McpError::Rpc { code, message, .. } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*code, codes::LIMIT_REACHED);
    assert!(
        message.contains("maxSessionsPerBackend") && message.contains("busy"),
        "{message}"
    );
    for call in busy {
        call.await.unwrap().unwrap();
    }
    // The limit shows where an operator looks: /status says what it did.
    let (_, status) = get_json(addr, "/status").await;
    let limit = &status["backends"][0]["limits"]["sessions"];
    assert!(limit["evicted"].as_u64() >= Some(1), "{limit}");
    assert!(limit["refused"].as_u64() >= Some(1), "{limit}");
    assert!(limit["lastHit"].is_string(), "{limit}");
    assert_eq!(limit["max"], 2);
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn log_levels_subscriptions_and_call_notifications_reach_only_their_own_client() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started {
        addr,
        stop,
        client: a,
        ..
    } = start_with(&one_backend(&server, ""), None).await;
    let b = client(addr).await;
    let mut a_notes = a.notifications();
    let mut b_notes = b.notifications();
    // Only A sets a level: it reaches A's backend session (opened with it), not B's.
    a.request("logging/setLevel", Some(json!({"level": "debug"})))
        .await
        .unwrap();
    text(&a, "count", json!({})).await;
    text(&b, "count", json!({})).await;
    assert_eq!(
        server.stats().by_method.get("logging/setLevel"),
        Some(&1),
        "exactly one backend session got a level"
    );
    // Only A subscribes: the backend's update reaches A's stream, not B's.
    a.request(
        "resources/subscribe",
        Some(json!({"uri": "test://watched-resource"})),
    )
    .await
    .unwrap();
    a.call_tool("test_tool_with_logging", json!({}))
        .await
        .unwrap();
    let (mut a_logs, mut a_updates) = (0, 0);
    while let Ok(Ok(note)) = tokio::time::timeout(Duration::from_millis(500), a_notes.recv()).await
    {
        a_logs += u32::from(note.method == "notifications/message");
        a_updates += u32::from(note.method == "notifications/resources/updated");
    }
    assert_eq!(a_logs, 3, "A sees its call's three log lines");
    assert_eq!(a_updates, 1, "A sees its subscription's update");
    while let Ok(note) = b_notes.try_recv() {
        assert_ne!(note.method, "notifications/message", "B saw A's log line");
        assert_ne!(
            note.method, "notifications/resources/updated",
            "B saw A's update"
        );
    }
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_at_the_backend_on_the_clients_own_session() {
    let server = TestServer::start(stateful()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&one_backend(&server, ""), None).await;
    let c = client(addr).await;
    text(&c, "echo", json!({"text": "warm"})).await;
    let sid = c.session_id().await.unwrap();
    let cancelled = || {
        server
            .stats()
            .by_method
            .get("notifications/cancelled")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(cancelled(), 0);
    // As the TS SDK client does: the call's stream stays open, and the cancellation comes
    // as a notification of its own. The vMCP must stop the call and pass the cancellation
    // on to the backend session the call went out on, under that session's request id.
    let headers = [
        ("Mcp-Session-Id", sid.as_str()),
        ("Accept", "application/json, text/event-stream"),
    ];
    let call = {
        let sid = sid.clone();
        tokio::spawn(async move {
            let headers = [
                ("Mcp-Session-Id", sid.as_str()),
                ("Accept", "application/json, text/event-stream"),
            ];
            raw(addr, "POST", "/mcp", &headers, r#"{"jsonrpc":"2.0","id":"long-1","method":"tools/call","params":{"name":"sleep","arguments":{"ms":20000}}}"#).await
        })
    };
    wait_for("the call to reach the backend", async || {
        server
            .stats()
            .by_method
            .get("tools/call")
            .copied()
            .unwrap_or(0)
            >= 2
    })
    .await;
    let (status, _) = raw(
        addr,
        "POST",
        "/mcp",
        &headers,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long-1","reason":"user"}}"#,
    )
    .await;
    assert_eq!(status, 202);
    wait_for("the backend to hear the cancellation", async || {
        cancelled() == 1
    })
    .await;
    // The call's own stream ends at once rather than after 20 s.
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the cancelled call's stream ended")
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(&codes::CANCELLED.to_string()), "{body}");
    // A client that gives up by closing the stream cancels too.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        c.call_tool("sleep", json!({"ms": 20_000})),
    )
    .await;
    assert!(gave_up.is_err(), "the call ended by itself: {gave_up:?}");
    wait_for("the backend to hear the second cancellation", async || {
        cancelled() == 2
    })
    .await;
    // The session goes on.
    assert_eq!(text(&c, "echo", json!({"text": "after"})).await, "after");
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn each_client_sees_and_calls_the_tools_its_capabilities_are_offered() {
    // hale-testkit lists `list_roots` only to clients that declared `roots`, as
    // server-everything lists its roots, sampling and elicitation tools.
    let server = TestServer::start(stateful()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&one_backend(&server, ""), None).await;
    let with_roots = McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            capabilities: Some(json!({"roots": {"listChanged": true}})),
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let without = client(addr).await;
    let has = |tools: &[Value]| tools.iter().any(|t| t["name"] == "list_roots");
    for _ in 0..2 {
        // Twice: the second time from what was kept.
        assert!(
            has(&with_roots.list_tools().await.unwrap()),
            "a client with roots is offered list_roots"
        );
        assert!(
            !has(&without.list_tools().await.unwrap()),
            "a client without roots is not"
        );
    }
    // It can call it: the backend asks it for its roots (hale-mcp as a client declines),
    // never "unknown tool".
    match with_roots.call_tool("list_roots", json!({})).await {
        Ok(result) => assert!(result["content"][0]["text"].is_string(), "{result}"),
        Err(McpError::Rpc { code, message, .. }) => {
            assert_ne!(code, codes::UNKNOWN_NAME, "{message}")
        }
        Err(e) => panic!("{e}"),
    }
    // A 2026-07-28 caller is shown what its own `_meta` capabilities are offered.
    let modern = |capabilities: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": capabilities}}})
        .to_string()
    };
    let headers = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/list"),
        ("Accept", "application/json, text/event-stream"),
    ];
    for (capabilities, offered) in [(json!({"roots": {}}), true), (json!({}), false)] {
        let (status, body) = raw(addr, "POST", "/mcp", &headers, &modern(capabilities)).await;
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            has(answer["result"]["tools"].as_array().unwrap()),
            offered,
            "{answer}"
        );
    }
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn client_sessions_are_bounded_with_a_share_per_caller_and_the_idlest_make_room() {
    let server = TestServer::start(stateful()).await.unwrap();
    // Every client here is anonymous from 127.0.0.1: one identity, whose share is 3.
    let Started {
        addr,
        stop,
        client: first,
        ..
    } = start_with(
        &one_backend(
            &server,
            "  maxClientSessions: 10\n  maxSessionsPerIdentity: 3\n",
        ),
        None,
    )
    .await;
    let sid_of = async |c: &McpClient| c.session_id().await.unwrap();
    let first_sid = sid_of(&first).await;
    // Clients that made a call and went quiet (no GET stream held: a listening client
    // is there, and is never the one to go).
    let quiet = async || {
        McpClient::connect(
            &format!("http://{addr}/mcp"),
            ClientOptions {
                listen: false,
                request_timeout: Duration::from_secs(10),
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap()
    };
    drop(first); // a client that leaves without DELETE: its stream goes with it
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (b, c) = (quiet().await, quiet().await);
    text(&b, "echo", json!({"text": "b"})).await;
    text(&c, "echo", json!({"text": "c"})).await;
    // A fourth session of the same caller: its own idlest (the first) makes room; an
    // initialize flood cannot grow without bound, nor push out other callers' sessions.
    let d = quiet().await;
    let ping = |sid: String| async move {
        let headers = [
            ("Mcp-Session-Id", sid.as_str()),
            ("Accept", "application/json, text/event-stream"),
        ];
        raw(
            addr,
            "POST",
            "/mcp",
            &headers,
            r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
        )
        .await
        .0
    };
    assert_eq!(ping(first_sid).await, 404, "the idlest session was ended");
    assert_eq!(ping(sid_of(&d).await).await, 200);
    // Only when every session of the share is busy right now is a new one refused.
    let (b, c, d) = (
        std::sync::Arc::new(b),
        std::sync::Arc::new(c),
        std::sync::Arc::new(d),
    );
    let busy: Vec<_> = [b, c, d]
        .into_iter()
        .map(|x| tokio::spawn(async move { x.call_tool("sleep", json!({"ms": 1500})).await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("maxSessionsPerIdentity"), "{refused}");
    for call in busy {
        call.await.unwrap().unwrap();
    }
    let (_, status) = get_json(addr, "/status").await;
    let share = &status["limits"]["sessionsPerIdentity"];
    assert!(
        share["evicted"].as_u64() >= Some(1) && share["refused"].as_u64() >= Some(1),
        "{share}"
    );
    stop.cancel();
    server.shutdown();
}

#[tokio::test]
async fn ten_thousand_clients_that_leave_without_delete_lock_nobody_out_at_the_defaults() {
    // The defaults: maxSessionsPerBackend 1000, maxClientSessions 10,000.
    let server = TestServer::start(stateful()).await.unwrap();
    let Started { addr, stop, .. } = start_with(&one_backend(&server, ""), None).await;
    let url = format!("http://{addr}/mcp");
    let quiet = || {
        McpClient::connect(
            &url,
            ClientOptions {
                listen: false,
                request_timeout: Duration::from_secs(10),
                ..ClientOptions::default()
            },
        )
    };
    // Each makes one call and vanishes (no DELETE), 32 at a time.
    let mut left = 10_000;
    while left > 0 {
        let batch: Vec<_> = (0..left.min(32))
            .map(|_| async {
                let c = quiet().await.unwrap();
                text(&c, "count", json!({})).await
            })
            .collect();
        left -= batch.len();
        for answered in futures_util::future::join_all(batch).await {
            assert_eq!(answered, "1");
        }
    }
    // A new client's call succeeds; the backend sessions that made room were ended.
    let newcomer = quiet().await.unwrap();
    assert_eq!(text(&newcomer, "count", json!({})).await, "1");
    assert!(backend_sessions(addr).await <= 1000);
    wait_for("the evicted backend sessions to be deleted", async || {
        server.stats().sessions_deleted >= 9_000
    })
    .await;
    // The client sessions were bounded too (one caller here: its share).
    let (_, status) = get_json(addr, "/status").await;
    assert!(
        status["clientSessions"].as_u64() <= Some(1000),
        "{}",
        status["clientSessions"]
    );
    stop.cancel();
    server.shutdown();
}
