//! Hostile connections (issue "reliability", defect 6): slow headers, a connection that
//! says nothing, and a body that never ends are closed within `readTimeout` /
//! `idleTimeout`, while a normal client is served throughout.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::time::{Duration, Instant};

use hale_testkit::{ServerConfig, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `first`, then waits for the server to answer or close: (what it said, how long).
async fn held_open(addr: std::net::SocketAddr, first: &[u8]) -> (String, Duration) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(first).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    (
        String::from_utf8_lossy(&answer).to_string(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_headers_idle_connections_and_endless_bodies_are_closed() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends:\n  - {{name: t, url: \"{}\"}}\noperational:\n  readTimeout: 300ms\n  idleTimeout: 500ms\n",
        server.url()
    );
    let Started {
        addr, stop, client, ..
    } = start_with(&yaml, None).await;
    let attacks = [
        (&b""[..], "a connection that says nothing"),
        (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n", "headers that never end"),
        (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"jsonrpc\":",
            "a body that never ends",
        ),
    ];
    let mut held = Vec::new();
    for (first, what) in attacks {
        held.push(tokio::spawn(
            async move { (what, held_open(addr, first).await) },
        ));
    }
    // A normal client is served meanwhile.
    for _ in 0..5 {
        client.list_tools().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in held {
        let (what, (answer, took)) = h.await.unwrap();
        assert!(
            took < Duration::from_secs(10),
            "{what}: still open after {took:?}"
        );
        if what == "a body that never ends" {
            assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
            assert!(answer.contains("-31005"), "{what}: {answer}");
        }
    }
    stop.cancel();
    server.shutdown();
}
