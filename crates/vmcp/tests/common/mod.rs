//! Helpers shared by the vMCP integration tests.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part

use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::TestServer;
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub(crate) async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `tools/list_changed`, skipping the resources and prompts variants.
pub(crate) async fn tools_changed(
    notes: &mut tokio::sync::broadcast::Receiver<hale_mcp::Notification>,
) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while notes.recv().await.unwrap().method != "notifications/tools/list_changed" {}
    })
    .await
    .expect("notifications/tools/list_changed");
}

/// The next notification with `method` (others skipped), within 5 s.
pub(crate) async fn next_notification(
    notes: &mut tokio::sync::broadcast::Receiver<hale_mcp::Notification>,
    method: &str,
) -> hale_mcp::Notification {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = notes.recv().await.unwrap();
            if n.method == method {
                return n;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {method} within 5 s"))
}

/// Follows `tools/list_changed` notifications until the tool names pass `test` (a list
/// that fails meanwhile, as `fail` mode may while a backend is dying, is skipped).
pub(crate) async fn tools_changed_until(
    client: &McpClient,
    notes: &mut tokio::sync::broadcast::Receiver<hale_mcp::Notification>,
    test: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            while notes.recv().await.unwrap().method != "notifications/tools/list_changed" {}
            if let Ok(tools) = client.list_tools().await {
                let now = names(&tools);
                if test(&now) {
                    return now;
                }
            }
        }
    })
    .await
    .expect("a tools/list_changed after which the tools changed as expected")
}

pub(crate) fn names(tools: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

pub(crate) async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        text.split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string(),
    )
}

/// A raw HTTP/1.1 request with `headers` and `body`: the status and the body as text.
pub(crate) async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

pub(crate) async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get_text(addr, path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A running vMCP, a client session on it, and a handle on its parts.
pub(crate) struct Started {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) stop: CancellationToken,
    pub(crate) client: McpClient,
    pub(crate) vmcp: hale_vmcp::Handle,
}

/// Starts a vMCP from `yaml`, waits until it is ready and connects a client.
pub(crate) async fn start_with(
    yaml: &str,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Started {
    let config = VmcpConfig::from_yaml("test.yaml", yaml).unwrap();
    let vmcp = Vmcp::bind(config, metrics).await.unwrap();
    let addr = vmcp.local_addr();
    let handle = vmcp.handle();
    let stop = CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let client = McpClient::connect(&format!("http://{addr}/mcp"), options)
        .await
        .unwrap();
    Started {
        addr,
        stop,
        client,
        vmcp: handle,
    }
}

pub(crate) async fn start(yaml: &str) -> (std::net::SocketAddr, CancellationToken, McpClient) {
    let s = start_with(yaml, None).await;
    (s.addr, s.stop, s.client)
}

pub(crate) fn two_backends(a: &TestServer, b: &TestServer, mode: &str, extra: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
backends:
  - {{name: good, url: "{}"}}
  - {{name: flaky, url: "{}"}}
operational:
  failureHandling:
    healthCheckInterval: 30s
    partialFailureMode: {mode}
{extra}
"#,
        a.url(),
        b.url()
    )
}

/// A vMCP from `yaml` serving until `stop`, ready, with `drain` as its drain timeout;
/// `task` ends when its shutdown is over.
pub(crate) struct Running {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) stop: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Starts [`Running`].
pub(crate) async fn run(yaml: &str, drain: Duration) -> Running {
    let config = VmcpConfig::from_yaml("test.yaml", yaml).unwrap();
    let vmcp = Vmcp::bind(config, None)
        .await
        .unwrap()
        .with_drain_timeout(drain);
    let addr = vmcp.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(vmcp.run(stop.clone()));
    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    Running { addr, stop, task }
}
