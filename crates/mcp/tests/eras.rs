//! hale-mcp speaks whichever era a server offers (spec §10): 2026-07-28 when
//! `server/discover` says so (`Era::Auto`), the handshake otherwise.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use hale_mcp::{ClientOptions, Era, MODERN_PROTOCOL_VERSION, McpClient, McpError};
use hale_testkit::{ServerConfig, TestServer};
use serde_json::json;

fn server(era: hale_testkit::Era) -> ServerConfig {
    ServerConfig {
        era,
        ..ServerConfig::default()
    }
}

fn options(era: Era) -> ClientOptions {
    ClientOptions {
        era,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn auto_speaks_2026_07_28_to_a_server_that_offers_it_and_lists_and_calls() {
    for served in [hale_testkit::Era::Modern, hale_testkit::Era::Both] {
        let s = TestServer::start(server(served)).await.unwrap();
        let client = McpClient::connect(&s.url(), options(Era::Auto))
            .await
            .unwrap();
        let info = client.server_info().await;
        assert_eq!(info.protocol_version, MODERN_PROTOCOL_VERSION);
        assert!(info.has("tools"));
        assert_eq!(client.session_id().await, None, "no session in 2026-07-28");
        let tools = client.list_tools().await.unwrap();
        assert!(tools.iter().any(|t| t["name"] == "echo"));
        let echo = client
            .call_tool("echo", json!({"text": "modern"}))
            .await
            .unwrap();
        assert_eq!(echo["content"][0]["text"], "modern");
        assert_eq!(echo["resultType"], "complete");
        client.ping().await.unwrap(); // server/discover: 2026-07-28 has no ping
        assert!(!s.stats().by_method.contains_key("ping"));
        assert!(!s.stats().by_method.contains_key("initialize"));
        s.shutdown();
    }
}

#[tokio::test]
async fn auto_falls_back_to_the_handshake_and_modern_only_refuses_a_legacy_server() {
    let legacy = TestServer::start(server(hale_testkit::Era::Legacy))
        .await
        .unwrap();
    let client = McpClient::connect(&legacy.url(), options(Era::Auto))
        .await
        .unwrap();
    assert_ne!(
        client.server_info().await.protocol_version,
        MODERN_PROTOCOL_VERSION
    );
    assert!(
        client.session_id().await.is_some(),
        "a handshake-era session"
    );
    client.ping().await.unwrap();
    let err = McpClient::connect(&legacy.url(), options(Era::Modern))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Protocol { .. }), "{err:?}");

    // The handshake alone against a 2026-07-28-only server: refused, as a protocol
    // failure (reachable, but not usable), never a healthy server.
    let modern = TestServer::start(server(hale_testkit::Era::Modern))
        .await
        .unwrap();
    let err = McpClient::connect(&modern.url(), options(Era::Legacy))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("-32022"), "{err}");
    legacy.shutdown();
    modern.shutdown();
}

#[tokio::test]
async fn resource_updates_are_asked_for_in_either_era_and_arrive_as_notifications() {
    for (served, era) in [
        (hale_testkit::Era::Modern, Era::Auto),
        (hale_testkit::Era::Legacy, Era::Legacy),
    ] {
        let s = TestServer::start(server(served)).await.unwrap();
        let client = McpClient::connect(&s.url(), options(era)).await.unwrap();
        let mut notes = client.notifications();
        // 2026-07-28: no resources/subscribe (the server would answer -32601); the URI
        // joins the listen stream's resourceSubscriptions. Handshake: resources/subscribe.
        client.subscribe_resource("test://watched").await.unwrap();
        let update = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let n = notes.recv().await.unwrap();
                if n.method == "notifications/resources/updated" {
                    return n;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no resources/updated from a {served:?} server"));
        assert_eq!(update.params.unwrap()["uri"], "test://watched");
        let subscribed = s.stats().by_method.get("resources/subscribe").copied();
        match served {
            hale_testkit::Era::Modern => assert_eq!(subscribed, None),
            _ => assert_eq!(subscribed, Some(1)),
        }
        client.unsubscribe_resource("test://watched").await.unwrap();
        client.close().await;
        s.shutdown();
    }
}
