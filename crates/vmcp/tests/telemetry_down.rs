//! A collector that is black-holed (it accepts connections and never answers) costs the
//! request path nothing, and shutdown still ends within the drain: spans wait in a
//! bounded queue, exported from a thread of their own, and what cannot be sent at
//! shutdown is given up on.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use hale_mcp::{ClientOptions, McpClient};
use hale_testkit::{ServerConfig, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_collector_neither_slows_calls_nor_holds_up_shutdown() {
    // Accepts, reads, never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: kit, url: \"{}\"}}\ntelemetry: {{endpoint: \"{collector}\", insecure: true, healthCheckSamplingRate: 1}}\n",
        backend.url()
    );
    let common::Running {
        addr,
        stop,
        task: running,
    } = common::run(&yaml, Duration::from_secs(2)).await;
    let client = McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    // Far more spans than one export batch, while every export hangs.
    for i in 0..600 {
        let r = client
            .call_tool("kit_echo", json!({"text": i.to_string()}))
            .await
            .unwrap();
        assert_eq!(r["content"][0]["text"], i.to_string());
    }
    let telemetry = hale_telemetry::get().unwrap();
    stop.cancel();
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("shutdown ended")
        .unwrap();
    // The drain (2 s) bounds the telemetry's flush too; an export waiting on the
    // collector (its 10 s timeout) would blow this, with room for a slow machine.
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopping.elapsed()
    );
    let counts = telemetry.counts();
    assert_eq!(
        counts.exported.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing reached it"
    );
}
