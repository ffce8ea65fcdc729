//! Live configuration (issue "Live configuration and operator controls"): a reload keeps
//! unchanged backends as they are — their health, lists and every client's backend
//! session — while calls go on; removed backends' sessions are closed; clients hear
//! `list_changed`; a file that cannot be used changes nothing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::{ServerConfig, TestServer};
use hale_vmcp::{Vmcp, VmcpConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A configuration file of its own for each test.
fn file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hale-reload-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("vmcp.yaml")
}

fn yaml(backends: &[(&str, &TestServer)], extra: &str) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for (name, server) in backends {
        y.push_str(&format!(
            "  - {{name: {name}, url: \"{}\"}}\n",
            server.url()
        ));
    }
    y.push_str("operational:\n  failureHandling: {healthCheckInterval: 30s}\n");
    y.push_str(extra);
    y
}

struct Running {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    handle: hale_vmcp::Handle,
}

async fn run(path: &PathBuf) -> Running {
    let config = VmcpConfig::from_file(path).unwrap();
    let vmcp = Vmcp::bind(config, None)
        .await
        .unwrap()
        .with_config_file(path);
    let (addr, handle, stop) = (vmcp.local_addr(), vmcp.handle(), CancellationToken::new());
    tokio::spawn(vmcp.run(stop.clone()));
    wait_for("readiness", async || {
        get_json(addr, "/readyz").await.0 == 200
    })
    .await;
    Running { addr, stop, handle }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_keeps_unchanged_backends_and_their_sessions() {
    let (a, b, c) = (
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
    );
    let path = file("load");
    std::fs::write(&path, yaml(&[("a", &a), ("b", &b)], "")).unwrap();
    let vmcp = run(&path).await;
    let client = Arc::new(client(vmcp.addr).await);
    let tools = names(&client.list_tools().await.unwrap());
    assert!(tools.contains(&"a_echo".into()) && tools.contains(&"b_echo".into()));
    // The client's own backend sessions, opened by a first call to each.
    client
        .call_tool("a_echo", json!({"text": "hi"}))
        .await
        .unwrap();
    client
        .call_tool("b_echo", json!({"text": "hi"}))
        .await
        .unwrap();
    let sid = client.session_id().await.unwrap();
    let before = vmcp.handle.resumable(&sid).await.unwrap().backend_sessions;
    assert!(before.contains_key("a") && before.contains_key("b"));
    let health_before = vmcp.handle.upstreams().get("a").unwrap().health.status();

    // Calls to `a` all the time, from four callers, while the file changes under them.
    let (going, calls, failures) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, going, calls, failures) = (
            client.clone(),
            going.clone(),
            calls.clone(),
            failures.clone(),
        );
        load.push(tokio::spawn(async move {
            while going.load(Ordering::Relaxed) {
                match client.call_tool("a_echo", json!({"text": "x"})).await {
                    Ok(r) if r["isError"] != true => calls.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut notes = client.notifications();
    let b_deleted = b.stats().sessions_deleted;

    std::fs::write(&path, yaml(&[("a", &a), ("c", &c)], "")).unwrap();
    let summary = vmcp.handle.reload().await.unwrap();
    assert_eq!(summary.added, ["c"]);
    assert_eq!(summary.removed, ["b"]);
    assert_eq!(summary.unchanged, ["a"]);
    assert!(summary.changed.is_empty());

    // Clients hear it, and see c's tools instead of b's.
    let now = tools_changed_until(&client, &mut notes, |t| {
        t.contains(&"c_echo".into()) && !t.contains(&"b_echo".into())
    })
    .await;
    assert!(now.contains(&"a_echo".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    going.store(false, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a call to the unchanged backend failed"
    );
    assert!(calls.load(Ordering::Relaxed) > 10, "the load did not run");

    // The unchanged backend kept its state and this client's backend session; the removed
    // one's was closed (DELETE) and its tools answer as unknown.
    let after = vmcp.handle.resumable(&sid).await.unwrap().backend_sessions;
    assert_eq!(
        after.get("a"),
        before.get("a"),
        "a's backend session changed"
    );
    assert!(!after.contains_key("b"));
    let health_after = vmcp.handle.upstreams().get("a").unwrap().health.status();
    assert_eq!(health_after["lastCheck"], health_before["lastCheck"]);
    assert!(
        b.stats().sessions_deleted > b_deleted,
        "b's sessions were left open"
    );
    let gone = client
        .call_tool("b_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(gone.to_string().contains("unknown tool"), "{gone}");
    client
        .call_tool("c_echo", json!({"text": "new"}))
        .await
        .unwrap();

    let status = get_json(vmcp.addr, "/status").await.1;
    assert_eq!(status["configuration"]["lastReload"]["result"], "success");
    assert_eq!(status["configuration"]["lastReload"]["added"], json!(["c"]));
    vmcp.stop.cancel();
}

#[tokio::test]
async fn a_changed_backend_is_replaced_and_its_clients_move_to_the_new_one() {
    let (a, b) = (
        TestServer::start(ServerConfig::default()).await.unwrap(),
        TestServer::start(ServerConfig::default()).await.unwrap(),
    );
    let path = file("changed");
    std::fs::write(&path, yaml(&[("a", &a)], "")).unwrap();
    let vmcp = run(&path).await;
    let client = client(vmcp.addr).await;
    client
        .call_tool("a_echo", json!({"text": "one"}))
        .await
        .unwrap();
    let opened_on_a = a.stats().sessions_opened;

    // Same name, another server.
    std::fs::write(&path, yaml(&[("a", &b)], "")).unwrap();
    let summary = vmcp.handle.reload().await.unwrap();
    assert_eq!(summary.changed, ["a"]);
    wait_for("the new upstream routable", async || {
        vmcp.handle
            .upstreams()
            .get("a")
            .is_some_and(|u| u.routable())
    })
    .await;
    let before_b = b.stats().by_method.get("tools/call").copied().unwrap_or(0);
    client
        .call_tool("a_echo", json!({"text": "two"}))
        .await
        .unwrap();
    assert_eq!(
        b.stats().by_method.get("tools/call").copied().unwrap_or(0),
        before_b + 1,
        "the call did not reach the new server"
    );
    assert!(
        a.stats().sessions_deleted >= 1,
        "the old server's sessions stay open"
    );
    assert_eq!(a.stats().sessions_opened, opened_on_a);
    vmcp.stop.cancel();
}

#[tokio::test]
async fn an_unusable_file_is_refused_with_its_key_and_the_vmcp_goes_on_as_it_was() {
    let a = TestServer::start(ServerConfig::default()).await.unwrap();
    let c = TestServer::start(ServerConfig::default()).await.unwrap();
    let path = file("invalid");
    std::fs::write(&path, yaml(&[("a", &a)], "")).unwrap();
    let vmcp = run(&path).await;
    let client = client(vmcp.addr).await;
    client.list_tools().await.unwrap();

    let bad = yaml(&[("a", &a)], "").replace(
        "{healthCheckInterval: 30s}",
        "{healthCheckInterval: 30s, unhealthyThreshold: 0}",
    );
    std::fs::write(&path, bad).unwrap();
    let e = vmcp.handle.reload().await.unwrap_err().to_string();
    assert!(
        e.contains("operational.failureHandling.unhealthyThreshold"),
        "{e}"
    );
    let status = get_json(vmcp.addr, "/status").await.1;
    let last = &status["configuration"]["lastReload"];
    assert_eq!(last["result"], "failure");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("unhealthyThreshold"),
        "{last}"
    );
    assert_eq!(status["configuration"]["failedReloads"], 1);
    // Still serving, with the configuration it had.
    client
        .call_tool("a_echo", json!({"text": "still"}))
        .await
        .unwrap();
    assert!(vmcp.handle.upstreams().get("a").unwrap().routable());

    // A good file again, noticed without being asked: the watcher reads it.
    let mut notes = client.notifications();
    std::fs::write(&path, yaml(&[("a", &a), ("c", &c)], "")).unwrap();
    tools_changed_until(&client, &mut notes, |t| t.contains(&"c_echo".into())).await;
    let status = get_json(vmcp.addr, "/status").await.1;
    assert_eq!(status["configuration"]["lastReload"]["result"], "success");
    assert_eq!(
        status["configuration"]["lastReload"]["trigger"],
        "file changed"
    );
    vmcp.stop.cancel();
}

#[tokio::test]
async fn calls_during_a_reload_that_replaces_their_backend_never_meet_an_unknown_tool() {
    let a = TestServer::start(ServerConfig::default()).await.unwrap();
    let path = file("no-unknown");
    std::fs::write(&path, yaml(&[("a", &a)], "")).unwrap();
    let vmcp = run(&path).await;
    let client = std::sync::Arc::new(client(vmcp.addr).await);
    client
        .call_tool("a_echo", json!({"text": "x"}))
        .await
        .unwrap();
    // Calls back to back while the backend is replaced (its timeout changes, a few times).
    let caller = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut unknown = Vec::new();
            for _ in 0..300 {
                if let Err(hale_mcp::McpError::Rpc { code, message, .. }) =
                    client.call_tool("a_echo", json!({"text": "x"})).await
                    && code == hale_mcp::codes::UNKNOWN_NAME
                {
                    unknown.push(message);
                }
            }
            unknown
        })
    };
    for timeout in ["11s", "12s", "13s", "14s", "15s"] {
        let extra = format!("  timeouts: {{default: {timeout}}}\n");
        std::fs::write(&path, yaml(&[("a", &a)], &extra)).unwrap();
        let summary = vmcp.handle.reload().await.unwrap();
        assert_eq!(summary.changed, ["a"]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unknown = caller.await.unwrap();
    assert!(
        unknown.is_empty(),
        "calls met 'unknown tool' during the reload: {unknown:?}"
    );
    vmcp.stop.cancel();
    a.shutdown();
}
