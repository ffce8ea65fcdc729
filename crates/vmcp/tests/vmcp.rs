//! The vMCP end to end as a library: real testkit backends, a real MCP client.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient, McpError, TransportKind};
use hale_testkit::{Fault, ServerConfig, TestServer, Transport};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;
use common::*;

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
    let after = tools_changed_until(&client, &mut notes, |t| {
        !t.iter().any(|n| n.starts_with("search_"))
    })
    .await;
    assert!(after.contains(&"weather_echo".to_string()));
    // Answered from the cached health: the error says so (no backend contact needed).
    let err = client
        .call_tool("search_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
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
    tools_changed_until(&client, &mut notes, |t| {
        t.contains(&"search_echo".to_string())
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

#[tokio::test]
async fn fail_and_best_effort_decide_what_a_fan_out_returns_when_one_backend_fails() {
    for mode in ["fail", "best_effort"] {
        let good = TestServer::start(ServerConfig::default()).await.unwrap();
        let flaky = TestServer::start(ServerConfig::default()).await.unwrap();
        let (addr, stop, client) = start(&two_backends(&good, &flaky, mode, "")).await;
        // Listed first, so the vMCP holds flaky's earlier lists: a best_effort answer
        // must still leave them out once flaky fails to list again.
        wait_for("flaky listed", async || {
            client
                .list_tools()
                .await
                .is_ok_and(|t| names(&t).contains(&"flaky_echo".to_string()))
        })
        .await;
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
        // Either way the failure counted with flaky's tracker (and breaker), not only
        // with the answer.
        let (_, status) = get_json(addr, "/status").await;
        assert_eq!(status["backends"][1]["name"], "flaky");
        assert!(
            status["backends"][1]["consecutiveFailures"]
                .as_u64()
                .unwrap()
                >= 1,
            "{status}"
        );
        assert_eq!(
            status["backends"][1]["lastError"]["category"], "http_status",
            "{status}"
        );
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
    // Said as a person reads it, never as Rust debug output; the exact wait is in data.
    assert!(
        message.contains("; retry in ") && !message.contains("Some("),
        "{message}"
    );
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
    // Calls to the withdrawn tool, or to no tool at all, are answered from what the vMCP
    // knows: they never become list requests to the healthy backend.
    let lists_before = good.stats().by_method.get("tools/list").copied();
    for _ in 0..5 {
        let err = client
            .call_tool("flaky_echo", json!({"text": "x"}))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("backend 'flaky' is unavailable"),
            "{err}"
        );
        let err = client
            .call_tool("no_such_tool", json!({}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown tool"), "{err}");
    }
    assert_eq!(
        good.stats().by_method.get("tools/list").copied(),
        lists_before
    );
    let (_, status) = get_json(addr, "/status").await;
    assert_eq!(status["backends"][1]["circuit"]["state"], "open");
    assert!(status["backends"][1]["circuit"]["retryAt"].is_string());
    stop.cancel();
    good.shutdown();
    flaky.shutdown();
}

#[tokio::test]
async fn fail_mode_answers_at_the_first_failure_and_cancels_the_other_branches() {
    let slow = TestServer::start(ServerConfig::default()).await.unwrap();
    let broken = TestServer::start(ServerConfig::default()).await.unwrap();
    let (_addr, stop, client) = start(&two_backends(&slow, &broken, "fail", "")).await;
    // Slow enough that waiting for it could not be mistaken for a loaded machine.
    slow.set_fault(Some(Fault::Slow(Duration::from_secs(30))))
        .await;
    broken.set_fault(Some(Fault::Status(500))).await;
    let started = std::time::Instant::now();
    let err = client.request("tools/list", None).await.unwrap_err();
    assert!(err.to_string().contains("flaky"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the slow branch: {:?}",
        started.elapsed()
    );
    stop.cancel();
    slow.shutdown();
    broken.shutdown();
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish_and_refuses_new_ones() {
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let other = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started {
        addr, stop, client, ..
    } = start_with(&two_backends(&good, &other, "fail", ""), None).await;
    let late = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    late.ping().await.unwrap();

    let in_flight =
        tokio::spawn(async move { client.call_tool("good_sleep", json!({"ms": 700})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Draining: a new request on an open connection is refused with a JSON-RPC error,
    // and nobody can connect any more.
    let refused = late.list_tools().await.unwrap_err();
    assert!(
        matches!(&refused, McpError::Rpc { code, .. } if *code == hale_mcp::codes::SHUTTING_DOWN),
        "a JSON-RPC error with HTTP 200, not a 5xx that ends the client's session: {refused}"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The call that was under way when the stop came is answered in full.
    let answer = in_flight.await.unwrap().unwrap();
    assert_ne!(answer["isError"], true, "{answer}");
    good.shutdown();
    other.shutdown();
}

#[tokio::test]
async fn progress_reaches_only_the_calling_session_and_logs_and_subscriptions_are_relayed() {
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let other = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started {
        addr, stop, client, ..
    } = start_with(&two_backends(&good, &other, "best_effort", ""), None).await;
    let bystander = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let mut mine = client.notifications();
    let mut theirs = bystander.notifications();

    // Two clients may pick the same token; the backend sees tokens of the vMCP's own.
    let result = client
        .request(
            "tools/call",
            Some(
                json!({"name": "good_test_tool_with_progress", "arguments": {},
                         "_meta": {"progressToken": "mine"}}),
            ),
        )
        .await
        .unwrap();
    assert_ne!(result["isError"], true, "{result}");
    let mut steps = Vec::new();
    while let Ok(Ok(note)) = tokio::time::timeout(Duration::from_millis(300), mine.recv()).await {
        if note.method == "notifications/progress" {
            let params = note.params.unwrap();
            assert_eq!(
                params["progressToken"], "mine",
                "the caller's own token comes back"
            );
            steps.push(params["progress"].as_f64().unwrap());
        }
    }
    assert_eq!(steps, [0.0, 50.0, 100.0]);
    while let Ok(note) = theirs.try_recv() {
        assert_ne!(
            note.method, "notifications/progress",
            "another session's progress"
        );
    }

    // logging/setLevel is accepted and passed on; subscriptions go to the resource's owner.
    client
        .request("logging/setLevel", Some(json!({"level": "debug"})))
        .await
        .unwrap();
    assert_eq!(good.stats().by_method.get("logging/setLevel"), Some(&1));
    client
        .request(
            "resources/subscribe",
            Some(json!({"uri": "test://watched-resource"})),
        )
        .await
        .unwrap();
    client
        .request(
            "resources/unsubscribe",
            Some(json!({"uri": "test://watched-resource"})),
        )
        .await
        .unwrap();
    let subscribed = |s: &TestServer| s.stats().by_method.get("resources/subscribe").copied();
    assert_eq!(
        subscribed(&good).unwrap_or(0) + subscribed(&other).unwrap_or(0),
        1,
        "exactly one backend (the URI's owner) was asked"
    );
    let err = client
        .request(
            "resources/subscribe",
            Some(json!({"uri": "test://nowhere"})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("resource not found"), "{err}");
    stop.cancel();
    good.shutdown();
    other.shutdown();
}

#[tokio::test]
async fn a_backends_sampling_request_is_relayed_to_the_calling_client_and_back() {
    let good = TestServer::start(ServerConfig::default()).await.unwrap();
    let other = TestServer::start(ServerConfig::default()).await.unwrap();
    let Started {
        addr, stop, client, ..
    } = start_with(&two_backends(&good, &other, "best_effort", ""), None).await;
    // A client with an "LLM": it declares sampling and answers the request.
    let with_llm = McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            relays_client_features: true,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let asked = seen.clone();
    let llm: hale_mcp::ServerRequestHandler =
        std::sync::Arc::new(move |request: hale_mcp::ServerRequest| {
            asked.lock().unwrap().push(request.clone());
            Box::pin(async move {
                Ok(
                    json!({"role": "assistant", "model": "test-model", "stopReason": "endTurn",
                          "content": {"type": "text", "text": "forty-two"}}),
                )
            })
        });
    let result = with_llm
        .request_answering(
            "tools/call",
            Some(json!({"name": "good_test_sampling", "arguments": {"prompt": "the answer?"}})),
            &llm,
        )
        .await
        .unwrap();
    assert_eq!(
        result["content"][0]["text"], "LLM response: forty-two",
        "{result}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "sampling/createMessage");
    assert_eq!(
        seen[0].params.as_ref().unwrap()["messages"][0]["content"]["text"],
        "the answer?"
    );

    // A client that cannot sample: the backend's tool reports the refusal; nothing hangs.
    let result = client
        .call_tool("good_test_sampling", json!({"prompt": "x"}))
        .await
        .unwrap();
    assert_eq!(result["isError"], true, "{result}");
    stop.cancel();
    good.shutdown();
    other.shutdown();
}
