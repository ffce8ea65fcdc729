//! The client against the testkit server over every transport: every method, pagination,
//! notifications, session loss, and each fault classified as it should be.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use hale_core::{CheckOutcome, FailureCategory};
use hale_mcp::{ClientOptions, McpClient, McpError, Probe, ProbeMethod, TransportKind};
use hale_testkit::{Fault, ServerConfig, TestServer, Transport};
use serde_json::json;

/// Every way the testkit can be served, with the client transport that reaches it.
fn setups() -> Vec<(&'static str, ServerConfig, TransportKind)> {
    let base = ServerConfig {
        page_size: 2, // force pagination everywhere
        ..ServerConfig::default()
    };
    vec![
        (
            "streamable, stateful, SSE answers",
            base.clone(),
            TransportKind::StreamableHttp,
        ),
        (
            "streamable, stateful, JSON answers",
            ServerConfig {
                json_response: true,
                ..base.clone()
            },
            TransportKind::StreamableHttp,
        ),
        (
            "streamable, stateless",
            ServerConfig {
                stateless: true,
                ..base.clone()
            },
            TransportKind::StreamableHttp,
        ),
        (
            "legacy SSE",
            ServerConfig {
                transport: Transport::Sse,
                ..base
            },
            TransportKind::Sse,
        ),
    ]
}

fn options(transport: TransportKind) -> ClientOptions {
    ClientOptions {
        transport,
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn every_method_works_over_every_transport() {
    for (name, config, transport) in setups() {
        let server = TestServer::start(config).await.unwrap();
        let client = McpClient::connect(&server.url(), options(transport))
            .await
            .unwrap();
        let info = client.server_info().await;
        assert_eq!(info.protocol_version, "2025-11-25", "{name}");
        assert!(info.has("tools"), "{name}");
        assert_eq!(info.server_info["name"], "hale-testkit", "{name}");

        client.ping().await.unwrap();
        let tools = client.list_tools().await.unwrap();
        let names: Vec<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, server.tool_names(), "{name}: all pages, in order");
        assert!(names.len() > 2, "pagination was exercised");
        assert_eq!(client.list_resources().await.unwrap().len(), 3, "{name}");
        assert_eq!(
            client.list_resource_templates().await.unwrap().len(),
            1,
            "{name}"
        );
        assert_eq!(client.list_prompts().await.unwrap().len(), 4, "{name}");

        let echo = client
            .call_tool("echo", json!({"text": "hi"}))
            .await
            .unwrap();
        assert_eq!(echo["content"][0]["text"], "hi", "{name}");
        let sum = client
            .call_tool("add", json!({"a": 2, "b": 40}))
            .await
            .unwrap();
        assert_eq!(sum["content"][0]["text"], "42", "{name}");
        let failed = client
            .call_tool("test_error_handling", json!({}))
            .await
            .unwrap();
        assert_eq!(
            failed["isError"], true,
            "{name}: a tool error is a result, not an error"
        );
        let read = client.read_resource("test://static-text").await.unwrap();
        assert!(
            read["contents"][0]["text"]
                .as_str()
                .unwrap()
                .contains("static text"),
            "{name}"
        );
        let prompt = client
            .get_prompt(
                "test_prompt_with_arguments",
                json!({"arg1": "a", "arg2": "b"}),
            )
            .await
            .unwrap();
        assert!(
            prompt["messages"][0]["content"]["text"]
                .as_str()
                .unwrap()
                .contains("arg1='a'")
        );

        let unknown = client.call_tool("nope", json!({})).await.unwrap_err();
        match &unknown {
            McpError::Rpc { code, message, .. } => {
                assert_eq!(*code, -32602, "{name}");
                assert!(message.contains("nope"), "{name}");
            }
            other => panic!("{name}: expected a JSON-RPC error, got {other:?}"),
        }
        assert_eq!(
            unknown.category(),
            None,
            "a JSON-RPC error is not a backend failure"
        );
        assert!(
            unknown.to_string().contains(&server.url()),
            "errors name the server"
        );

        client.close().await;
        server.shutdown();
    }
}

#[tokio::test]
async fn closing_deletes_the_streamable_session() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let client = McpClient::connect(&server.url(), options(TransportKind::StreamableHttp))
        .await
        .unwrap();
    assert_eq!(server.stats().open_sessions, 1);
    client.close().await;
    let stats = server.stats();
    assert_eq!((stats.sessions_deleted, stats.open_sessions), (1, 0));
}

#[tokio::test]
async fn list_changed_notifications_reach_the_client() {
    for (name, config, transport) in setups() {
        if config.stateless {
            continue; // no stream to carry them
        }
        let server = TestServer::start(config).await.unwrap();
        let client = McpClient::connect(&server.url(), options(transport))
            .await
            .unwrap();
        let mut notes = client.notifications();
        // Give the streamable client a moment to open its GET stream.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(server.add_tool("weather"));
        let note = tokio::time::timeout(Duration::from_secs(5), notes.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: no notification"))
            .unwrap();
        assert_eq!(note.method, "notifications/tools/list_changed", "{name}");
        let tools = client.list_tools().await.unwrap();
        assert!(tools.iter().any(|t| t["name"] == "weather"), "{name}");
        server.shutdown();
    }
}

#[tokio::test]
async fn a_forgotten_session_is_replaced_transparently() {
    for (name, config, transport) in setups() {
        let server = TestServer::start(config.clone()).await.unwrap();
        let client = McpClient::connect(&server.url(), options(transport))
            .await
            .unwrap();
        client.ping().await.unwrap();
        server.forget_sessions(); // as after a restart
        if transport == TransportKind::Sse {
            // Give the reader a moment to see its stream end.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let echo = client
            .call_tool("echo", json!({"text": "again"}))
            .await
            .unwrap();
        assert_eq!(echo["content"][0]["text"], "again", "{name}");
        let opened = server.stats().sessions_opened;
        if config.stateless {
            assert_eq!(opened, 0, "{name}");
        } else {
            assert_eq!(opened, 2, "{name}: exactly one re-initialization");
        }
        server.shutdown();
    }
}

/// What a probe must conclude under each fault.
#[tokio::test]
async fn each_fault_is_classified_by_the_probe() {
    let timeout = Duration::from_millis(400);
    let cases: Vec<(Option<Fault>, Result<(), FailureCategory>)> = vec![
        (None, Ok(())),
        (Some(Fault::Down), Err(FailureCategory::ConnectionRefused)),
        (Some(Fault::Hang), Err(FailureCategory::Timeout)),
        (
            Some(Fault::Slow(Duration::from_secs(2))),
            Err(FailureCategory::Timeout),
        ),
        (Some(Fault::Slow(Duration::from_millis(50))), Ok(())),
        (Some(Fault::Status(503)), Err(FailureCategory::HttpStatus)),
        (Some(Fault::Status(500)), Err(FailureCategory::HttpStatus)),
        (Some(Fault::Status(404)), Err(FailureCategory::Protocol)),
        (Some(Fault::Malformed), Err(FailureCategory::Protocol)),
    ];
    for (_, config, transport) in setups() {
        for (fault, expected) in &cases {
            let server = TestServer::start(config.clone()).await.unwrap();
            let mut probe = Probe::new(
                &server.url(),
                options(transport),
                ProbeMethod::Ping,
                timeout,
            );
            server.set_fault(*fault).await;
            let outcome = probe.check().await;
            let got = match &outcome {
                CheckOutcome::Success { .. } => Ok(()),
                CheckOutcome::Failure(f) => Err(f.category),
                CheckOutcome::Unauthenticated { .. } => panic!("unexpected {outcome:?}"),
            };
            assert_eq!(&got, expected, "{transport} under {fault:?}: {outcome:?}");
            if let (Some(Fault::Slow(d)), CheckOutcome::Success { latency }) = (fault, &outcome) {
                assert!(latency >= d, "the latency includes the delay");
            }
            server.shutdown();
        }
    }
}

#[tokio::test]
async fn unauthorized_answers_are_unauthenticated_not_failures() {
    for status in [401, 403] {
        let server = TestServer::start(ServerConfig::default()).await.unwrap();
        server.set_fault(Some(Fault::Status(status))).await;
        let mut probe = Probe::new(
            &server.url(),
            options(TransportKind::StreamableHttp),
            ProbeMethod::Ping,
            Duration::from_secs(1),
        );
        let outcome = probe.check().await;
        assert!(
            matches!(outcome, CheckOutcome::Unauthenticated { ref message } if message.contains(&status.to_string())),
            "{outcome:?}"
        );
        server.shutdown();
    }
}

#[tokio::test]
async fn a_probe_keeps_one_session_and_recovers_after_an_outage() {
    for (name, config, transport) in setups() {
        let server = TestServer::start(config.clone()).await.unwrap();
        let mut probe = Probe::new(
            &server.url(),
            options(transport),
            ProbeMethod::Ping,
            Duration::from_secs(1),
        );
        for _ in 0..5 {
            assert!(
                matches!(probe.check().await, CheckOutcome::Success { .. }),
                "{name}"
            );
        }
        let stats = server.stats();
        assert_eq!(stats.by_method.get("ping"), Some(&5), "{name}");
        assert_eq!(
            stats.by_method.get("initialize"),
            Some(&1),
            "{name}: one probe session"
        );

        server.set_fault(Some(Fault::Down)).await;
        assert!(
            matches!(probe.check().await, CheckOutcome::Failure(_)),
            "{name}"
        );
        assert!(
            !probe.has_session(),
            "{name}: a failed check drops the session"
        );
        server.set_fault(None).await;
        assert!(
            matches!(probe.check().await, CheckOutcome::Success { .. }),
            "{name}"
        );
        assert_eq!(
            server.stats().by_method.get("initialize"),
            Some(&2),
            "{name}"
        );

        let deleted = server.stats().sessions_deleted;
        probe.close().await;
        if !config.stateless && transport == TransportKind::StreamableHttp {
            assert!(
                server.stats().sessions_deleted > deleted,
                "{name}: closing deletes the probe session"
            );
        }
        server.shutdown();
    }
}

#[tokio::test]
async fn tools_list_probes_list_every_page() {
    let server = TestServer::start(ServerConfig {
        page_size: 3,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut probe = Probe::new(
        &server.url(),
        options(TransportKind::StreamableHttp),
        ProbeMethod::ToolsList,
        Duration::from_secs(1),
    );
    assert!(matches!(probe.check().await, CheckOutcome::Success { .. }));
    let pages = server.tool_names().len().div_ceil(3) as u64;
    assert_eq!(server.stats().by_method.get("tools/list"), Some(&pages));
    server.shutdown();
}
