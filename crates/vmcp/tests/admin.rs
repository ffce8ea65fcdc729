//! The admin API (issue "Live configuration and operator controls"): off unless
//! configured, refused without the operator's credentials, and each lever doing what an
//! operator expects — a forced circuit, draining, maintenance — as clients see it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::{ServerConfig, TestServer};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-admin-token-0123456789";

/// A raw HTTP request; the status and the JSON body.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, body) = raw(addr, method, path, &headers, body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn tokens_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("hale-admin-{}.tokens", std::process::id()));
    std::fs::write(&path, format!("ops {TOKEN}\n")).unwrap();
    path
}

async fn client(addr: std::net::SocketAddr) -> McpClient {
    let options = ClientOptions {
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    McpClient::connect(&format!("http://{addr}/mcp"), options)
        .await
        .unwrap()
}

fn config(a: &TestServer, b: &TestServer, admin: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: a, url: \"{}\"}}\n  - {{name: b, url: \"{}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: 30s}}\n{admin}",
        a.url(),
        b.url()
    )
}

#[tokio::test]
async fn without_admin_configured_the_api_is_not_there() {
    let (a, b) = (
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
    );
    let s = start_with(&config(&a, &b, ""), None).await;
    let (status, body) = send(s.addr, "GET", "/api/admin/backends", None, "").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("operational.admin")
    );
    s.stop.cancel();
}

#[tokio::test]
async fn anonymous_admin_off_loopback_does_not_start() {
    let (a, b) = (
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
    );
    let yaml = config(&a, &b, "  admin: {type: anonymous}\n").replace(
        "listen: 127.0.0.1:0",
        "listen: 0.0.0.0:0\nincomingAuth: {type: anonymous}",
    );
    let config = VmcpConfig::from_yaml("t.yaml", &yaml).unwrap();
    let e = Vmcp::bind(config, None).await.unwrap_err().to_string();
    assert!(
        e.contains("operational.admin") && e.contains("loopback"),
        "{e}"
    );
}

#[tokio::test]
async fn operator_levers_need_the_token_and_do_what_they_say() {
    let (a, b) = (
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
    );
    let admin = format!(
        "  admin: {{type: static, tokensFile: \"{}\"}}\n",
        tokens_file().display()
    );
    let s = start_with(&config(&a, &b, &admin), None).await;
    let addr = s.addr;
    let circuit = "/api/admin/backends/a/circuit";

    // No token, a wrong one: 401 with a challenge; nothing changes.
    let (status, _) = send(addr, "POST", circuit, None, r#"{"state":"open"}"#).await;
    assert_eq!(status, 401);
    let (status, _) = send(addr, "POST", circuit, Some("wrong"), r#"{"state":"open"}"#).await;
    assert_eq!(status, 401);
    let c = &s.client;
    c.call_tool("a_echo", json!({"text": "x"})).await.unwrap();

    // Bad bodies name the field; unknown backends are 404.
    let (status, body) = send(addr, "POST", circuit, Some(TOKEN), r#"{"state":"ajar"}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("state"), "{body}");
    let (status, _) = send(
        addr,
        "POST",
        "/api/admin/backends/zz/circuit",
        Some(TOKEN),
        r#"{"state":"open"}"#,
    )
    .await;
    assert_eq!(status, 404);

    // Force open: a's tools are withdrawn (clients told) and its calls refused at once.
    let mut notes = c.notifications();
    let (status, body) = send(addr, "POST", circuit, Some(TOKEN), r#"{"state":"open"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["circuit"]["override"], "forced-open");
    let now = tools_changed_until(c, &mut notes, |t| !t.contains(&"a_echo".into())).await;
    assert!(now.contains(&"b_echo".into()));
    let calls_before = a.stats().by_method.get("tools/call").copied().unwrap_or(0);
    let e = c
        .call_tool("a_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("backend 'a' is unavailable"), "{e}");
    assert_eq!(
        a.stats().by_method.get("tools/call").copied().unwrap_or(0),
        calls_before,
        "a forced-open circuit let a call through"
    );
    // Back to automatic: the tools return.
    let (status, body) = send(addr, "POST", circuit, Some(TOKEN), r#"{"state":"auto"}"#).await;
    assert_eq!(status, 200);
    assert!(body["circuit"]["override"].is_null());
    tools_changed_until(c, &mut notes, |t| t.contains(&"a_echo".into())).await;
    c.call_tool("a_echo", json!({"text": "x"})).await.unwrap();

    // Drain: a client that has a backend session on a goes on; a new one is refused;
    // the tools are withdrawn.
    let mode = "/api/admin/backends/a/mode";
    let (status, body) = send(addr, "POST", mode, Some(TOKEN), r#"{"mode":"draining"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "draining");
    tools_changed_until(c, &mut notes, |t| !t.contains(&"a_echo".into())).await;
    c.call_tool("a_echo", json!({"text": "finishing"}))
        .await
        .unwrap();
    let newcomer = client(addr).await;
    let e = newcomer
        .call_tool("a_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("draining"), "{e}");

    // Maintenance: nobody gets through.
    let (status, _) = send(addr, "POST", mode, Some(TOKEN), r#"{"mode":"maintenance"}"#).await;
    assert_eq!(status, 200);
    let e = c
        .call_tool("a_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("maintenance"), "{e}");
    let (_, status_doc) = get_json(addr, "/status").await;
    let a_status = status_doc["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a_status["mode"], "maintenance");

    // Active again.
    let (status, _) = send(addr, "POST", mode, Some(TOKEN), r#"{"mode":"active"}"#).await;
    assert_eq!(status, 200);
    tools_changed_until(c, &mut notes, |t| t.contains(&"a_echo".into())).await;
    newcomer
        .call_tool("a_echo", json!({"text": "back"}))
        .await
        .unwrap();

    // The token's name is who made the change: /status shows the rule, never the token.
    let text = get_text(addr, "/status").await.1;
    assert!(!text.contains(TOKEN));
    s.stop.cancel();
}
