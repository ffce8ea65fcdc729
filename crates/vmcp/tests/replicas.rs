//! Two vMCPs in one process sharing a real redis-server (`sessionStorage: redis`): a
//! session opened at one is served by the other, and what a backend says to the session
//! at one replica reaches the client's stream held at the other (Redis pub/sub). A vMCP
//! whose Redis is not there at start serves nothing that needs it, says so, and
//! recovers when it comes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::redis::RedisServer;
use hale_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

fn yaml(redis: &str, backend: &TestServer) -> String {
    format!(
        "listen: 127.0.0.1:0\nsessionStorage: {{provider: redis, address: \"{redis}\", timeout: 500ms}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\n",
        backend.url()
    )
}

/// POSTs `message` to the vMCP at `addr` in session `sid`: status and body.
async fn post(addr: std::net::SocketAddr, sid: &str, message: Value) -> (u16, String) {
    let headers = [
        ("Accept", "application/json, text/event-stream"),
        ("Mcp-Session-Id", sid),
    ];
    raw(addr, "POST", "/mcp", &headers, &message.to_string()).await
}

#[tokio::test]
async fn a_notification_for_a_session_reaches_its_stream_at_another_replica() {
    let redis = RedisServer::start().unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let a = start_with(&yaml(&redis.address(), &backend), None).await;
    let b = start_with(&yaml(&redis.address(), &backend), None).await;
    wait_for("both connected to Redis", async || {
        for addr in [a.addr, b.addr] {
            if get_json(addr, "/status").await.1["sessionStorage"]["connected"] != true {
                return false;
            }
        }
        true
    })
    .await;

    // The client's session and its GET stream are at replica A.
    let client = McpClient::connect(
        &format!("http://{}/mcp", a.addr),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let sid = client.session_id().await.unwrap();
    let mut notes = client.notifications();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Through replica B (which resumes the session from Redis), it subscribes to a
    // resource: the backend's update arrives at B, and is published to A.
    let (status, body) = post(
        b.addr,
        &sid,
        json!({"jsonrpc": "2.0", "id": 9, "method": "resources/subscribe", "params": {"uri": "test://watched-resource"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let update = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = notes.recv().await.unwrap();
            if n.method == "notifications/resources/updated" {
                return n;
            }
        }
    })
    .await
    .expect("the update reached the stream held at replica A");
    assert_eq!(update.params.unwrap()["uri"], "test://watched-resource");
    // Another caller's session id is still no credential at B: an unknown id is 404.
    let (status, _) = post(
        b.addr,
        "0123456789abcdef0123456789abcdef",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(status, 404);
    a.stop.cancel();
    b.stop.cancel();
}

/// The `count` tool's answer for session `sid` at the vMCP at `addr`.
async fn count_at(addr: std::net::SocketAddr, sid: &str) -> u64 {
    let (status, body) = post(
        addr,
        sid,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "kit_count", "arguments": {}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&body);
    let answer: Value = serde_json::from_str(data).unwrap();
    answer["result"]["content"][0]["text"]
        .as_str()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("{answer}"))
}

#[tokio::test]
async fn a_backend_session_opened_again_after_the_backend_lost_it_is_the_one_others_take_over() {
    let redis = RedisServer::start().unwrap();
    let backend = TestServer::start(ServerConfig {
        session_tools: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let a = start_with(&yaml(&redis.address(), &backend), None).await;
    let b = start_with(&yaml(&redis.address(), &backend), None).await;
    let client = McpClient::connect(
        &format!("http://{}/mcp", a.addr),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            listen: false,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let sid = client.session_id().await.unwrap();
    assert_eq!(count_at(a.addr, &sid).await, 1);
    // The backend restarts and forgets every session: at A the call goes on in a new
    // backend session, opened for this client alone.
    backend.forget_sessions();
    assert_eq!(
        count_at(a.addr, &sid).await,
        1,
        "a new backend session at A"
    );
    // B takes over that new one, not the one the backend forgot.
    assert_eq!(
        count_at(b.addr, &sid).await,
        2,
        "B is on A's new backend session"
    );
    assert_eq!(count_at(a.addr, &sid).await, 3);
    a.stop.cancel();
    b.stop.cancel();
}

#[tokio::test]
async fn without_redis_at_start_new_sessions_get_a_clear_error_until_it_comes() {
    // An address nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let config =
        hale_vmcp::VmcpConfig::from_yaml("t.yaml", &yaml(&format!("127.0.0.1:{port}"), &backend))
            .unwrap();
    let vmcp = hale_vmcp::Vmcp::bind(config, None).await.unwrap();
    let addr = vmcp.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    wait_for("ready", async || get_json(addr, "/readyz").await.0 == 200).await;
    let status = get_json(addr, "/status").await.1;
    assert_eq!(status["sessionStorage"]["connected"], false, "{status}");
    let url = format!("http://{addr}/mcp");
    let connect = || {
        McpClient::connect(
            &url,
            ClientOptions {
                request_timeout: Duration::from_secs(5),
                ..ClientOptions::default()
            },
        )
    };
    let started = std::time::Instant::now();
    let e = connect().await.map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("-31009") && e.contains("not reachable yet"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Redis comes (on that port): new sessions work.
    let redis = RedisServer::start_on(port).unwrap();
    wait_for("connected", async || {
        get_json(addr, "/status").await.1["sessionStorage"]["connected"] == true
    })
    .await;
    let client = connect().await.unwrap();
    assert!(!client.list_tools().await.unwrap().is_empty());
    drop(redis);
    stop.cancel();
}

#[test]
fn session_storage_mistakes_name_their_key_and_never_the_password() {
    let cases = [
        (
            "{provider: mongo}",
            "sessionStorage.provider: expected memory or redis",
        ),
        (
            "{provider: redis}",
            "sessionStorage.address: required with provider redis",
        ),
        (
            "{provider: redis, address: redis}",
            "sessionStorage.address: expected host:port",
        ),
        (
            "{provider: redis, address: \"r:6379\", passwordEnv: HALE_TEST_SURELY_UNSET_VARIABLE}",
            "sessionStorage.passwordEnv: the environment variable HALE_TEST_SURELY_UNSET_VARIABLE is not set",
        ),
        (
            "{provider: redis, address: \"r:6379\", timeout: 0s}",
            "sessionStorage.timeout",
        ),
        (
            "{provider: redis, address: \"r:6379\", pasword: x}",
            "pasword",
        ),
    ];
    for (storage, expected) in cases {
        let yaml = format!(
            "sessionStorage: {storage}\nbackends:\n  - {{name: a, url: \"http://127.0.0.1:1/mcp\"}}\n"
        );
        let e = hale_vmcp::VmcpConfig::from_yaml("vmcp.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{storage}\n  gave: {e}");
    }
}

#[tokio::test]
async fn a_redis_restarted_empty_gets_the_sessions_back_and_a_new_replica_serves_them() {
    let redis = RedisServer::start().unwrap();
    let port: u16 = redis.address().rsplit(':').next().unwrap().parse().unwrap();
    let backend = TestServer::start(ServerConfig {
        session_tools: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let a = start_with(&yaml(&redis.address(), &backend), None).await;
    let client = McpClient::connect(
        &format!("http://{}/mcp", a.addr),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            listen: false,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let sid = client.session_id().await.unwrap();
    assert_eq!(count_at(a.addr, &sid).await, 1);
    // Redis restarts with nothing in it (no persistence): the session lives on at A…
    drop(redis);
    let redis = RedisServer::start_on(port).unwrap();
    // …and A writes it back within a few seconds of Redis answering again, not at its
    // next renewal (minutes away): a replica that joins now serves it.
    let b = start_with(&yaml(&redis.address(), &backend), None).await;
    let since = std::time::Instant::now();
    wait_for(
        "a replica that joined after the restart to know the session",
        async || {
            let (status, _) = post(
                b.addr,
                &sid,
                json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
            )
            .await;
            status == 200
        },
    )
    .await;
    assert!(
        since.elapsed() < Duration::from_secs(8),
        "{:?}",
        since.elapsed()
    );
    // On the same backend session: the count goes on.
    assert_eq!(count_at(b.addr, &sid).await, 2);
    // New sessions are taken at once, not refused with -31009 while the store recovers.
    McpClient::connect(&format!("http://{}/mcp", a.addr), ClientOptions::default())
        .await
        .unwrap();
    a.stop.cancel();
    b.stop.cancel();
}
